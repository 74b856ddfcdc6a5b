/**
 * A process-wide pool of worker threads that compress blocks (gzip and zstd). Workers
 * start lazily, are shared by every gzipParallel and zstdParallel stream, and do not keep
 * the process alive while idle.
 */
import type { Worker } from 'node:worker_threads';
import { nodeWorkerThreads } from '../util/lazy-node.js';
import type { BlockJob, BlockResult, BlockTask } from './block-worker.js';

interface Pending {
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

class PoolWorker {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending>();
  constructor(url: URL, onExit: (w: PoolWorker) => void) {
    this.worker = startWorker(url);
    this.worker.unref();
    this.worker.on('message', (m: BlockResult) => {
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) this.worker.unref();
      if ('error' in m) p.reject(new Error(`compression worker failed: ${m.error}`));
      else p.resolve(Buffer.from(m.out.buffer, m.out.byteOffset, m.out.byteLength));
    });
    const fail = (err: Error): void => {
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      onExit(this);
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`compression worker exited with code ${code} while compressing`)));
  }
}

// Compiled: dist/layer/block-worker.js. Run from source (tests under tsx): the .ts file,
// loaded after registering tsx inside the worker (loader flags do not reach workers).
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(FROM_SOURCE ? './block-worker.ts' : './block-worker.js', import.meta.url);

function startWorker(url: URL): Worker {
  const { Worker } = nodeWorkerThreads();
  if (!FROM_SOURCE) return new Worker(url);
  const code = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(code, { eval: true });
}
const workers: PoolWorker[] = [];
let nextId = 1;

function drop(w: PoolWorker): void {
  const i = workers.indexOf(w);
  if (i >= 0) workers.splice(i, 1);
}

/**
 * Compresses one block on the least busy of up to `size` workers. `task.block` is
 * transferred when it owns its whole ArrayBuffer (the caller must not use it afterwards);
 * everything else is copied.
 */
export function compressOnPool(size: number, task: BlockTask): Promise<Buffer> {
  let target: PoolWorker | undefined;
  for (const w of workers.slice(0, size)) if (target === undefined || w.pending.size < target.pending.size) target = w;
  if ((target === undefined || target.pending.size > 0) && workers.length < size) {
    target = new PoolWorker(WORKER_URL, drop);
    workers.push(target);
  }
  const w = target!;
  const id = nextId++;
  return new Promise<Buffer>((resolve, reject) => {
    w.pending.set(id, { resolve, reject });
    w.worker.ref();
    const job: BlockJob = { id, task };
    const block = task.block;
    const transferable = block.byteOffset === 0 && block.byteLength === block.buffer.byteLength && !(block.buffer instanceof SharedArrayBuffer);
    w.worker.postMessage(job, transferable ? [block.buffer as ArrayBuffer] : []);
  });
}
