/**
 * Regular files of a layer created off the main thread, in batches: the applier hands
 * each small file (path in a parent it verified, metadata) to {@link FileBatches.reserve}
 * and copies its body into the batch's arena; full batches go to the addon's
 * `writeFiles`, which creates them on a thread-pool thread, two batches at a time. File
 * creation is kernel work that scales with threads (two `tar -x` of disjoint halves of
 * the bench tree: 4.9–5.1 s against 8.1–9.2 s for one), and the main thread keeps
 * parsing the tar meanwhile.
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
export const BATCH_MAX_FILE = 1 << 20;
/** A batch's bodies live in one arena, reused once the batch is written (room for a full batch plus one largest file). */
const ARENA = BATCH_BYTES + BATCH_MAX_FILE;

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
  readonly bodies: Buffer[] = [];
  bytes = 0;
  constructor(readonly arena: Buffer) {}
}

export class FileBatches {
  private cur: Batch | undefined;
  private readonly inFlight: Promise<void>[] = [];
  private readonly arenas: Buffer[] = [];
  private failure: { err: unknown } | undefined;

  constructor(private readonly sys: Pick<NativeSys, 'writeFiles'>) {}

  /** Nothing queued or in flight. */
  get idle(): boolean {
    return this.cur === undefined && this.inFlight.length === 0;
  }

  /**
   * Queues a file of `size` bytes (at most {@link BATCH_MAX_FILE}) and returns the room
   * for its body: the caller fills it before its next call here, then calls
   * {@link added}. Bodies are copies, so the caller's buffers are free again at once.
   */
  reserve(path: string, size: number, m: FileMeta): Buffer {
    this.rethrow();
    if (path.includes('\0')) throw new TypeError(`expected a path without NUL bytes, found ${JSON.stringify(path)}`);
    if (!(size >= 0 && size <= BATCH_MAX_FILE)) throw new RangeError(`expected a file of at most ${BATCH_MAX_FILE} bytes, found ${size}`);
    if (this.cur !== undefined && this.cur.bytes + size > this.cur.arena.length) this.send();
    const b = (this.cur ??= new Batch(this.arenas.pop() ?? Buffer.allocUnsafe(ARENA)));
    const body = b.arena.subarray(b.bytes, b.bytes + size);
    b.paths.push(path);
    b.meta.push(size > 0 ? 1 : 0, m.uid, m.gid, m.mode, m.mtime, m.chown ? CHOWN : 0);
    if (size > 0) b.bodies.push(body);
    b.bytes += size;
    return body;
  }

  /**
   * The reserved file's body is filled. Returns a promise when the caller must wait before
   * queuing more (the batches in flight are full), else undefined.
   */
  added(): Promise<void> | undefined {
    const b = this.cur;
    if (b === undefined || (b.bytes < BATCH_BYTES && b.paths.length < BATCH_FILES)) return undefined;
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
    this.cur = undefined;
    await Promise.allSettled(this.inFlight.splice(0));
  }

  private send(): void {
    const b = this.cur;
    if (b === undefined) return;
    this.cur = undefined;
    const paths = Buffer.from(`${b.paths.join('\0')}\0`);
    const p = this.sys.writeFiles(paths, Float64Array.from(b.meta), b.bodies).then(
      () => {
        this.arenas.push(b.arena);
      },
      (err: unknown) => {
        this.failure ??= { err };
        this.arenas.push(b.arena);
      },
    );
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
