/** Content store: OCI-layout blob storage addressed by sha256 digest. */
export { sha256, parseDigest, isDigest, digestHex, type Digest } from './digest.js';
export { ContentStore, mkdirDurable, type ContentInfo, type ContentWriter } from './content-store.js';
export { VerifyStream, type VirtualBlob, type VirtualBlobSource, type SnapshotDiffRecipe } from './virtual.js';
export {
  SnapshotterError,
  InvalidDigestError,
  DigestMismatchError,
  SizeMismatchError,
  BlobNotFoundError,
  IngestLockedError,
  WriterClosedError,
  type ErrorCode,
} from '../errors.js';
