export const packageName = '@tsbuild/snapshotter';
export * from './content/index.js';
export * from './layer/index.js';
export * from './image/index.js';
