/**
 * A gzip layer blob inflated by the addon (node's own zlib, on a pool thread) into a
 * ring of four reused 1 MiB buffers, for the applier only. Node's zlib stream allocates
 * a new buffer per output chunk: on a 1.1 GB layer that is ~1.1 GB of short-lived
 * ArrayBuffers, and V8 counts them against the heap's limit until a GC frees them —
 * 110 mark-compacts per apply of the bench layer here (none when the heap starts at
 * 256 MB). Reusing the buffers takes that away, and the read stream's buffers with it.
 *
 * Contract (why it is internal): a chunk's bytes stay valid until two more chunks have
 * been requested; a consumer copies what it keeps (the tar reader and the applier do:
 * headers are parsed at once, xattr values copied, file bodies copied into the file
 * writer's batches or written at once).
 */
import type { Digest } from '../content/index.js';
import { native, type NativeSys } from '../util/native.js';
import { CorruptLayerError } from './errors.js';

const CHUNK = 1 << 20;
const RING = 4;

/** A blob being inflated: its chunks, then (with `hash`, read to the end) the sha256 of the output. */
export interface NativeGunzip {
  chunks: AsyncIterable<Buffer>;
  /** `sha256:<hex>` of everything inflated, once `chunks` ended (undefined before, or without `hash`). */
  digest(): Digest | undefined;
}

/**
 * Opens `path` for native inflating, or undefined when the addon cannot (not built, no
 * zlib or SHA-256 in this node) or the file is not gzip. Throws fs-style errors of open
 * (ENOENT for a blob that is only virtual, for instance).
 */
export function openNativeGunzip(path: string, blob: Digest, opts: { hash: boolean }): NativeGunzip | undefined {
  const sys = native();
  if (sys === undefined) return undefined;
  const h = sys.gunzipOpen(path, opts.hash);
  if (h === null) return undefined;
  let digest: Digest | undefined;
  return {
    chunks: chunks(sys, h, blob, (hex) => {
      digest = `sha256:${hex}`;
    }),
    digest: () => digest,
  };
}

async function* chunks(sys: NativeSys, h: object, blob: Digest, onDigest: (hex: string) => void): AsyncGenerator<Buffer> {
  const ring = Array.from({ length: RING }, () => Buffer.allocUnsafe(CHUNK));
  let k = 0;
  const read = (): Promise<number> => {
    const p = sys.gunzipRead(h, ring[k % RING]!);
    p.catch(() => undefined); // awaited below; this only keeps a rejection between awaits from counting as unhandled
    return p;
  };
  let next: Promise<number> | undefined = read();
  let ended = false;
  try {
    for (;;) {
      let n: number;
      try {
        n = await next;
      } catch (err) {
        next = undefined;
        const code = (err as { code?: unknown }).code;
        if (typeof code === 'string' && code.startsWith('Z_')) throw new CorruptLayerError(blob, 'gzip', (err as Error).message, { cause: err });
        throw err;
      }
      if (n === 0) {
        next = undefined;
        ended = true;
        return;
      }
      const out = ring[k % RING]!.subarray(0, n);
      k++;
      // inflate the next chunk while this one is parsed: it goes to the slot three back,
      // which nothing references any more (see the contract above)
      next = read();
      yield out;
    }
  } finally {
    if (next !== undefined) await next.catch(() => undefined);
    const hex = sys.gunzipClose(h);
    if (ended && hex !== null) onDigest(hex);
  }
}
