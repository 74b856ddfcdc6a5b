/**
 * Worker-thread entry of the block pool: compresses one block per request, gzip with
 * {@link compressBlock}, zstd with {@link compressZstdBlock}.
 */
import { parentPort } from 'node:worker_threads';
import { compressBlock } from './gzip-block.js';
import { compressZstdBlock } from './zstd-block.js';

/** A block to compress: gzip (a raw deflate piece of one stream) or zstd (whole frames). */
export type BlockTask =
  | { kind: 'gzip'; block: Uint8Array; prev: Uint8Array; level: number; final: boolean }
  | { kind: 'zstd'; block: Uint8Array; level: number };

/** A request from the pool. */
export interface BlockJob {
  id: number;
  task: BlockTask;
}

/** The answer to a {@link BlockJob}. */
export type BlockResult = { id: number; out: Uint8Array } | { id: number; error: string };

function compress(task: BlockTask): Uint8Array {
  if (task.kind === 'gzip') return compressBlock(task.block, task.prev, task.level, task.final);
  return compressZstdBlock(task.block, task.level);
}

const port = parentPort;
if (port !== null) {
  port.on('message', (job: BlockJob) => {
    let msg: BlockResult;
    try {
      const piece = compress(job.task);
      // a private ArrayBuffer, so it can be transferred without detaching a pool slab
      // (gzip) or the thread's scratch buffer (zstd)
      const out = new Uint8Array(new ArrayBuffer(piece.length));
      out.set(piece);
      msg = { id: job.id, out };
      port.postMessage(msg, [out.buffer]);
    } catch (err) {
      msg = { id: job.id, error: err instanceof Error ? err.message : String(err) };
      port.postMessage(msg);
    }
  });
}
