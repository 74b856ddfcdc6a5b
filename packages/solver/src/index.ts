export const packageName = '@tsbuild/solver';
