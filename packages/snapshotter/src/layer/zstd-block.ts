/**
 * Compression of one block of a parallel zstd stream (runs inside a pool worker).
 *
 * The block is cut into runs by the entropy test of entropy.ts (the one gzip uses) and
 * every run becomes one complete zstd frame (RFC 8878 §3.1: a zstd stream is a sequence
 * of frames, decoded as one): a compressible run at `level`, an incompressible one at
 * libzstd's fastest level, where libzstd finds nothing and writes raw blocks at about
 * memory speed (measured 2.7-3.7 GB/s on random runs of 4-128 KiB, vs 0.7-2.8 GB/s at
 * level 1). Every frame carries its content size and an XXH64 content checksum, so a
 * decoder checks each one. A frame cannot refer to another's bytes: the blocks and
 * frames are independent, and the output depends only on the block's bytes and `level`.
 *
 * zstd-napi's native binding is loaded on first use, so a gzip-only process never loads it.
 */
import { createRequire } from 'node:module';
import { classify } from './entropy.js';

type Binding = typeof import('zstd-napi/binding.js');
type CCtx = InstanceType<Binding['CCtx']>;

let binding: Binding | undefined;

/** zstd-napi's binding (synchronous libzstd calls), loaded once per thread. */
export function zstdBinding(): Binding {
  binding ??= createRequire(import.meta.url)('zstd-napi/binding.js') as Binding;
  return binding;
}

const contexts = new Map<number, CCtx>();
let scratch = new Uint8Array(0);

function context(level: number): CCtx {
  let c = contexts.get(level);
  if (c === undefined) {
    const b = zstdBinding();
    c = new b.CCtx();
    c.setParameter(b.CParameter.compressionLevel, level);
    c.setParameter(b.CParameter.checksumFlag, 1);
    contexts.set(level, c);
  }
  return c;
}

/** One zstd frame holding `data` (an empty `data` gives an empty frame). */
export function zstdFrame(data: Uint8Array, level: number): Buffer {
  const out = Buffer.allocUnsafe(zstdBinding().compressBound(data.length));
  return out.subarray(0, context(level).compress2(out, data));
}

/**
 * The zstd frames of `block`, one per run of {@link classify}. The result is a view of
 * this thread's scratch buffer, valid until the next call. An empty block gives no bytes.
 */
export function compressZstdBlock(block: Uint8Array, level: number): Uint8Array {
  const b = zstdBinding();
  const runs = classify(block);
  let bound = 0;
  for (const [s, e] of runs) bound += b.compressBound(e - s);
  if (scratch.length < bound) scratch = new Uint8Array(bound);
  let o = 0;
  for (const [s, e, incompressible] of runs) {
    o += context(incompressible ? b.minCLevel() : level).compress2(scratch.subarray(o), block.subarray(s, e));
  }
  return scratch.subarray(0, o);
}
