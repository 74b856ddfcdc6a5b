/**
 * Helpers for the reliability tests of every package (`@tsbuild/snapshotter/testing`);
 * not part of the builder's API.
 */
export { startSwapper, type Swapper } from './swapper.js';
