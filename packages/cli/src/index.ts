export const packageName = '@tsbuild/cli';
