export const packageName = '@tsbuild/parser';
