import { createHash } from 'node:crypto';
import { InvalidDigestError } from '../errors.js';

/** A content digest, always `sha256:<64 lower-case hex>`. Build with {@link sha256} or {@link parseDigest}. */
export type Digest = `sha256:${string}`;

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** The sha256 digest of `data` (strings are hashed as UTF-8). */
export function sha256(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** True when `s` is a well-formed `sha256:<64 hex>` digest. */
export function isDigest(s: unknown): s is Digest {
  return typeof s === 'string' && DIGEST_RE.test(s);
}

/** Validates `s` as `sha256:<64 lower-case hex>`; throws {@link InvalidDigestError} otherwise. */
export function parseDigest(s: string): Digest {
  if (!isDigest(s)) throw new InvalidDigestError(String(s));
  return s;
}

/** The hex part of a digest. */
export function digestHex(d: Digest): string {
  return d.slice('sha256:'.length);
}
