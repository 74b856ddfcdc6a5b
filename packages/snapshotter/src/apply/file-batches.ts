/**
 * Regular files of a layer created off the main thread, in batches: the applier hands
 * each small file (path in a parent it verified, whole body, metadata) to
 * {@link FileBatches.add}; full batches go to the addon's `writeFiles`, which creates
 * them on a thread-pool thread, two batches at a time. File creation is kernel work that
 * scales with threads (two `tar -x` of disjoint halves of the bench tree: 4.9–5.1 s
 * against 8.1–9.2 s for one), and the main thread keeps parsing the tar meanwhile.
 *
 * Ordering contract: a queued file exists once {@link FileBatches.flush} resolves. The
 * applier flushes before anything whose outcome depends on a queued file: a lookup of a
 * path it has not resolved yet, a removal, a hardlink, a whiteout, a second entry of the
 * same name, and the end of the layer. Creating a new name in a verified parent needs no
 * flush (a queued file of the same name would be one of the cases above).
 */
import type { NativeSys } from '../util/native.js';

/** A batch is sent once it holds this many body bytes ... */
const BATCH_BYTES = 1 << 20;
/** ... or this many files. */
const BATCH_FILES = 128;
/** Batches on the thread pool at once (libuv has four threads; the inflate needs one). */
const IN_FLIGHT = 2;
/** Bigger files are written by the caller, streaming (their bodies are not held whole). */
export const BATCH_MAX_FILE = 4 << 20;

const CHOWN = 1;

/** Metadata of one file (numbers as in the tar header). */
export interface FileMeta {
  uid: number;
  gid: number;
  mode: number;
  mtime: number;
  /** false when a new file already has uid/gid (ours, and no setgid parent changes the group). */
  chown: boolean;
}

class Batch {
  readonly paths: string[] = [];
  readonly meta: number[] = [];
  readonly chunks: Buffer[] = [];
  bytes = 0;
}

export class FileBatches {
  private cur = new Batch();
  private readonly inFlight: Promise<void>[] = [];
  private failure: { err: unknown } | undefined;

  constructor(private readonly sys: Pick<NativeSys, 'writeFiles'>) {}

  /** Nothing queued or in flight. */
  get idle(): boolean {
    return this.cur.paths.length === 0 && this.inFlight.length === 0;
  }

  /**
   * Queues a file of `chunks` (not copied: they must stay unchanged). Returns a promise
   * when the caller must wait before queuing more (the batches in flight are full), else
   * undefined.
   */
  add(path: string, chunks: Buffer[], bytes: number, m: FileMeta): Promise<void> | undefined {
    this.rethrow();
    if (path.includes('\0')) throw new TypeError(`expected a path without NUL bytes, found ${JSON.stringify(path)}`);
    const b = this.cur;
    b.paths.push(path);
    b.meta.push(chunks.length, m.uid, m.gid, m.mode, m.mtime, m.chown ? CHOWN : 0);
    for (const c of chunks) b.chunks.push(c);
    b.bytes += bytes;
    if (b.bytes < BATCH_BYTES && b.paths.length < BATCH_FILES) return undefined;
    this.send();
    return this.inFlight.length >= IN_FLIGHT ? this.waitOldest() : undefined;
  }

  /** Every queued file created (rejects with the first failure). */
  async flush(): Promise<void> {
    this.send();
    while (this.inFlight.length > 0) await this.waitOldest();
    this.rethrow();
  }

  /** Waits for what is in flight without sending more and without throwing (for error paths). */
  async settle(): Promise<void> {
    this.cur = new Batch();
    await Promise.allSettled(this.inFlight.splice(0));
  }

  private send(): void {
    const b = this.cur;
    if (b.paths.length === 0) return;
    this.cur = new Batch();
    const paths = Buffer.from(`${b.paths.join('\0')}\0`);
    const p = this.sys.writeFiles(paths, Float64Array.from(b.meta), b.chunks).catch((err: unknown) => {
      this.failure ??= { err };
    });
    this.inFlight.push(p);
  }

  private async waitOldest(): Promise<void> {
    await this.inFlight.shift();
    this.rethrow();
  }

  private rethrow(): void {
    if (this.failure !== undefined) throw this.failure.err;
  }
}
