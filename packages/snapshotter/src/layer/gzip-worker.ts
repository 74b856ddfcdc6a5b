/** Worker-thread entry of the gzip pool: compresses blocks with {@link compressBlock}. */
import { parentPort } from 'node:worker_threads';
import { compressBlock } from './gzip-block.js';

/** A request from the pool. */
export interface GzipJob {
  id: number;
  block: Uint8Array;
  prev: Uint8Array;
  level: number;
  final: boolean;
}

/** The answer to a {@link GzipJob}. */
export type GzipResult = { id: number; out: Uint8Array } | { id: number; error: string };

const port = parentPort;
if (port !== null) {
  port.on('message', (job: GzipJob) => {
    let msg: GzipResult;
    try {
      const piece = compressBlock(job.block, job.prev, job.level, job.final);
      // a private ArrayBuffer, so it can be transferred without detaching a pool slab
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
