/** OCI images: manifests/configs in the content store, names, platforms, archives. */
export type {
  Platform,
  Descriptor,
  HealthConfig,
  ImageRuntimeConfig,
  HistoryEntry,
  ImageConfigFile,
  Manifest,
  StoredImage,
  LayerRef,
} from './types.js';
export { MediaTypes as ImageMediaTypes, MAX_JSON_SIZE, REF_NAME_ANNOTATION, CONTAINERD_NAME_ANNOTATION, CREATED_ANNOTATION } from './types.js';
export { canonicalJson } from './canonical-json.js';
export { writeImage, readImage } from './image.js';
export { hostPlatform, normalizePlatform, formatPlatform, parsePlatform } from './platform.js';
export { parseImageRef, type ImageReference } from './reference.js';
export { ImageStore, type ImageListEntry } from './image-store.js';
export {
  InvalidReferenceError,
  InvalidManifestError,
  ContentTooLargeError,
  NoMatchingPlatformError,
  LockTimeoutError,
  ImageNotFoundError,
  InvalidArchiveError,
} from '../errors.js';
export { saveDockerArchive, saveOciArchive, writeOciLayout, type ArchiveImage } from './archive-save.js';
export { loadArchive, type LoadedImage } from './archive-load.js';
