export const packageName = '@tsbuild/snapshotter';
