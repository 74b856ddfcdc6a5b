import { createHash, randomBytes, type Hash } from 'node:crypto';
import { constants as fsc, existsSync } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  BlobNotFoundError,
  DigestMismatchError,
  IngestLockedError,
  SizeMismatchError,
  WriterClosedError,
} from '../errors.js';
import { digestHex, isDigest, parseDigest, sha256, type Digest } from './digest.js';
import { crashPoint } from '../crash-point.js';
import { isErrno, pidAlive } from '../util/process.js';
import { writeFileAtomic } from '../snapshots/metadata.js';
import { parseVirtualBlob, VerifyStream, type VirtualBlob, type VirtualBlobSource } from './virtual.js';

/** Size and digest of a committed blob. */
export interface ContentInfo {
  digest: Digest;
  size: number;
  /** Set by `walk()` for a virtual blob (no file under blobs/: see {@link VirtualBlob}). */
  virtual?: VirtualBlob;
}

/**
 * An open ingest. Bytes are hashed while they are written to `ingest/<hash(ref)>/data`;
 * `commit` verifies them and only then renames them to `blobs/sha256/<hex>`.
 * Await each `write` before the next one: the promise resolves once the bytes were
 * handed to the file (this is the backpressure).
 */
export interface ContentWriter {
  readonly ref: string;
  write(chunk: Uint8Array): Promise<void>;
  /** fsync, verify `expect`, rename into place, fsync the directory. An existing blob counts as success. */
  commit(expect?: { size?: number; digest?: Digest }): Promise<ContentInfo>;
  /** Drops the ingest. Safe to call more than once and after a failed commit. */
  abort(): Promise<void>;
}

const OCI_LAYOUT = '{"imageLayoutVersion":"1.0.0"}';
const EMPTY_INDEX = '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}';
/** Small writes are coalesced into a buffer of this size before they reach the file. */
const STAGING_SIZE = 1 << 20;
/** Writes at least this big go straight to the file. */
const DIRECT_WRITE_MIN = 64 * 1024;
const READ_CHUNK = 256 * 1024;
/**
 * Every this many bytes written, a background fdatasync starts (at most one at a time):
 * with a lot of RAM the kernel otherwise keeps a whole big blob dirty until commit's
 * fsync, and the disk only starts writing after all the CPU work is done. Early
 * writeback lets the disk work while we still tar, hash and compress; commit's fsync
 * then only flushes the tail. Crash safety is unchanged: commit still fsyncs before
 * the rename.
 */
const EARLY_SYNC_BYTES = 32 * 1024 * 1024;

/** fsync a directory so a rename inside it is durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * `mkdir -p` that makes what it created durable: the parent of each directory it created
 * is fsynced, deepest first (POSIX makes a new name durable only through an fsync of its
 * directory: without it a power cut can take `blobs/sha256` away while `index.json`,
 * fsynced later, survives and names blobs that are gone). Nothing to sync, and one
 * mkdir call, when the directory exists.
 */
export async function mkdirDurable(dir: string, mode?: number): Promise<void> {
  const first = await mkdir(dir, { recursive: true, ...(mode !== undefined ? { mode } : {}) });
  if (first === undefined) return;
  const top = resolve(first);
  for (let d = resolve(dir); ; d = dirname(d)) {
    await fsyncDir(dirname(d));
    if (d === top || d === dirname(d)) break;
  }
}

/**
 * Creates `path` with `content` only if it does not exist yet, atomically
 * (temp file + fsync + link, which never replaces). Returns true when it created it.
 */
export async function createFileIfAbsent(path: string, content: string | Uint8Array): Promise<boolean> {
  // Already there (every open after the first): no temp file to write, so a full disk does not fail the open.
  if (await stat(path).then(() => true, () => false)) return false;
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const fh = await open(tmp, 'wx', 0o644);
  try {
    await fh.writeFile(content);
    await fh.sync();
  } catch (err) {
    // ENOSPC and the like: leave no temp file behind
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  try {
    await link(tmp, path);
    await fsyncDir(dirname(path));
    return true;
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false;
    throw err;
  } finally {
    await unlink(tmp);
  }
}

interface IngestOwner {
  pid: number;
  ref: string;
  started: string;
}

/**
 * A content-addressed blob store laid out as an OCI image layout:
 * `root/oci-layout`, `root/index.json`, `root/blobs/sha256/<hex>`, and
 * `root/ingest/<sha256(ref)>/data` for writes in progress.
 *
 * A blob appears under its digest only after its bytes were fsynced and verified, so a
 * crash never leaves a half-written blob under a digest. Several processes may share
 * one root.
 */
export class ContentStore {
  readonly root: string;
  readonly #blobDir: string;
  readonly #ingestDir: string;
  readonly #virtualDir: string;
  /** Ingest directory names held by writers of this process. */
  readonly #active = new Set<string>();
  #source: VirtualBlobSource | undefined;

  private constructor(root: string) {
    this.root = root;
    this.#blobDir = join(root, 'blobs', 'sha256');
    this.#ingestDir = join(root, 'ingest');
    this.#virtualDir = join(root, 'virtual', 'sha256');
  }

  /**
   * Sets what regenerates virtual blobs. Without one, virtual blobs are missing
   * (`has` false, reads fail with {@link BlobNotFoundError}).
   */
  useVirtualSource(source: VirtualBlobSource): void {
    this.#source = source;
  }

  /**
   * Records a virtual blob durably (temp + fsync + rename + dir fsync): from now on
   * `has`/`info`/reads see `blob.digest`, its bytes regenerated by the virtual source
   * and verified. A no-op when the real blob is already there.
   */
  async addVirtual(blob: VirtualBlob): Promise<void> {
    if (await this.#hasFile(blob.digest)) return;
    await mkdirDurable(this.#virtualDir);
    crashPoint('virtual-record');
    await writeFileAtomic(this.virtualPath(blob.digest), JSON.stringify(blob));
    crashPoint('virtual-recorded');
  }

  /** The virtual record of `d` (whether or not its recipe can still run); undefined when none or a real blob exists. */
  async virtualBlob(d: Digest): Promise<VirtualBlob | undefined> {
    if (await this.#hasFile(d)) return undefined;
    return this.#virtualRecord(d);
  }

  async #virtualRecord(d: Digest): Promise<VirtualBlob | undefined> {
    try {
      return parseVirtualBlob(await readFile(this.virtualPath(d), 'utf8'), d);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  /** The virtual record of `d` when its bytes can be regenerated now. */
  async #availableVirtual(d: Digest): Promise<VirtualBlob | undefined> {
    const rec = await this.#virtualRecord(d);
    if (rec === undefined || this.#source === undefined) return undefined;
    return (await this.#source.available(rec)) ? rec : undefined;
  }

  /** The regenerated bytes of a virtual blob, verified against its digest and size. */
  #openVirtual(rec: VirtualBlob): Readable {
    const src = this.#source!.open(rec);
    const verify = new VerifyStream(rec);
    src.on('error', (err) => verify.destroy(err));
    verify.on('close', () => src.destroy());
    return src.pipe(verify);
  }

  /**
   * Writes the real blob of a virtual one (regenerated, verified, fsync'd, renamed into
   * place like any ingest) and drops the virtual record. A no-op for a real blob;
   * {@link BlobNotFoundError} when neither can be had.
   */
  async materialize(d: Digest): Promise<ContentInfo> {
    if (await this.#hasFile(d)) return this.info(d);
    const rec = await this.#availableVirtual(d);
    if (rec === undefined) throw new BlobNotFoundError(d);
    const w = await this.writer();
    try {
      await pipeline(this.#openVirtual(rec), async (src: AsyncIterable<Buffer>) => {
        for await (const chunk of src) await w.write(chunk);
      });
      await w.commit({ digest: rec.digest, size: rec.size });
    } catch (err) {
      await w.abort();
      throw err;
    }
    await unlink(this.virtualPath(d)).catch((err: unknown) => {
      if (!isErrno(err, 'ENOENT')) throw err;
    });
    return { digest: rec.digest, size: rec.size };
  }

  async #hasFile(d: Digest): Promise<boolean> {
    try {
      await stat(this.blobPath(d));
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  /** Opens (creating if needed) the store at `root`. */
  static async open(root: string): Promise<ContentStore> {
    const store = new ContentStore(root);
    await mkdirDurable(store.#blobDir);
    await mkdir(store.#ingestDir, { recursive: true });
    await createFileIfAbsent(join(root, 'oci-layout'), OCI_LAYOUT);
    await createFileIfAbsent(join(root, 'index.json'), EMPTY_INDEX);
    return store;
  }

  /** Path of the virtual record of `d` (it may not exist). Treat it as read-only. */
  virtualPath(d: Digest): string {
    return join(this.#virtualDir, digestHex(parseDigest(d)));
  }

  /** Path of the blob file (it may not exist). Treat it as read-only. */
  blobPath(d: Digest): string {
    return join(this.#blobDir, digestHex(parseDigest(d)));
  }

  /** Whether the blob can be read: a real one, or a virtual one whose recipe can run. */
  async has(d: Digest): Promise<boolean> {
    if (await this.#hasFile(d)) return true;
    return (await this.#availableVirtual(d)) !== undefined;
  }

  /** Size of a blob (real or available virtual); throws {@link BlobNotFoundError}. */
  async info(d: Digest): Promise<ContentInfo> {
    try {
      const st = await stat(this.blobPath(d));
      return { digest: d, size: st.size };
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
      const rec = await this.#availableVirtual(d);
      if (rec !== undefined) return { digest: d, size: rec.size };
      throw new BlobNotFoundError(d, { cause: err });
    }
  }

  /**
   * Streams a blob. A missing blob errors the stream with {@link BlobNotFoundError}; a
   * virtual blob is regenerated and verified (a mismatch errors the stream).
   */
  createReadStream(d: Digest): Readable {
    const path = this.blobPath(d);
    const virtual = (): Promise<VirtualBlob | undefined> => this.#availableVirtual(d);
    const openVirtual = (rec: VirtualBlob): Readable => this.#openVirtual(rec);
    async function* chunks(): AsyncGenerator<Buffer> {
      let fh: FileHandle;
      try {
        fh = await open(path, 'r');
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
        const rec = await virtual();
        if (rec === undefined) throw new BlobNotFoundError(d, { cause: err });
        yield* openVirtual(rec) as AsyncIterable<Buffer>;
        return;
      }
      try {
        for (;;) {
          const buf = Buffer.allocUnsafe(READ_CHUNK);
          const { bytesRead } = await fh.read(buf, 0, READ_CHUNK, null);
          if (bytesRead === 0) return;
          yield bytesRead === READ_CHUNK ? buf : buf.subarray(0, bytesRead);
        }
      } finally {
        await fh.close();
      }
    }
    return Readable.from(chunks(), { objectMode: false, highWaterMark: READ_CHUNK });
  }

  /** Reads a whole blob into memory; throws {@link BlobNotFoundError}. */
  async readBlob(d: Digest): Promise<Buffer> {
    try {
      return await readFile(this.blobPath(d));
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
      if ((await this.#availableVirtual(d)) === undefined) throw new BlobNotFoundError(d, { cause: err });
      const parts: Buffer[] = [];
      for await (const c of this.createReadStream(d)) parts.push(c as Buffer);
      return Buffer.concat(parts);
    }
  }

  /**
   * Opens an ingest. Without `ref` a unique one is made. A ref held by a live writer (in
   * this or another process) throws {@link IngestLockedError}; one left by a dead
   * process is taken over (its bytes are discarded).
   */
  async writer(opts: { ref?: string } = {}): Promise<ContentWriter> {
    const ref = opts.ref ?? `anon-${process.pid}-${randomBytes(12).toString('hex')}`;
    const name = createHash('sha256').update(ref).digest('hex');
    const dir = join(this.#ingestDir, name);
    if (this.#active.has(name)) throw new IngestLockedError(ref, process.pid);
    this.#active.add(name);
    try {
      await this.#lockIngest(dir, ref);
      const fh = await open(join(dir, 'data'), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o644);
      return new FileContentWriter(ref, dir, fh, this.#blobDir, () => this.#active.delete(name));
    } catch (err) {
      this.#active.delete(name);
      throw err;
    }
  }

  /** Claims `dir` atomically: build it under a temp name with an owner file, then rename. */
  async #lockIngest(dir: string, ref: string): Promise<void> {
    const owner: IngestOwner = { pid: process.pid, ref, started: new Date().toISOString() };
    for (let attempt = 0; ; attempt++) {
      const tmp = join(this.#ingestDir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
      await mkdir(tmp);
      await writeFile(join(tmp, 'owner'), JSON.stringify(owner));
      try {
        await rename(tmp, dir);
        return;
      } catch (err) {
        await rm(tmp, { recursive: true, force: true });
        if (!isErrno(err, 'EEXIST', 'ENOTEMPTY') || attempt > 0) {
          if (isErrno(err, 'EEXIST', 'ENOTEMPTY')) throw new IngestLockedError(ref, (await readOwner(dir))?.pid);
          throw err;
        }
      }
      const current = await readOwner(dir);
      if (current !== undefined && current.pid !== process.pid && pidAlive(current.pid)) {
        throw new IngestLockedError(ref, current.pid);
      }
      // Crash leftover: move it out of the way (only one contender wins this rename), then retry.
      const trash = join(this.#ingestDir, `.trash-${process.pid}-${randomBytes(6).toString('hex')}`);
      try {
        await rename(dir, trash);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
      await rm(trash, { recursive: true, force: true });
    }
  }

  /** Stores `bytes`; returns at once when the blob already exists. Verifies `expect.digest`. */
  async writeBlob(bytes: Uint8Array, expect: { digest?: Digest } = {}): Promise<ContentInfo> {
    const digest = sha256(bytes);
    if (expect.digest !== undefined && expect.digest !== digest) {
      throw new DigestMismatchError(expect.digest, digest);
    }
    if (await this.has(digest)) return { digest, size: bytes.byteLength };
    const w = await this.writer();
    try {
      await w.write(bytes);
      return await w.commit({ size: bytes.byteLength, digest });
    } catch (err) {
      await w.abort();
      throw err;
    }
  }

  /** Removes a blob (real and/or virtual record); throws {@link BlobNotFoundError} when absent. */
  async delete(d: Digest): Promise<void> {
    let found = false;
    for (const path of [this.blobPath(d), this.virtualPath(d)]) {
      try {
        await unlink(path);
        found = true;
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
    if (!found) throw new BlobNotFoundError(d);
  }

  /**
   * Every committed blob (files under `blobs/sha256` whose name is not a hex digest are
   * ignored), then every virtual record without a real blob (`virtual` set, whether or
   * not its recipe can still run).
   */
  async *walk(): AsyncIterable<ContentInfo> {
    const names = await readdir(this.#blobDir);
    names.sort();
    const real = new Set<string>();
    for (const name of names) {
      const digest = `sha256:${name}`;
      if (!isDigest(digest)) continue;
      try {
        const st = await stat(join(this.#blobDir, name));
        if (st.isFile()) {
          real.add(name);
          yield { digest, size: st.size };
        }
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err; // deleted while walking
      }
    }
    yield* this.#walkVirtual((name) => real.has(name));
  }

  /**
   * Every virtual record without a real blob (`virtual` set, whether or not its recipe
   * can still run), without listing the real blobs (`cache check` hashes those itself).
   */
  walkVirtual(): AsyncIterable<ContentInfo> {
    return this.#walkVirtual((name) => existsSync(join(this.#blobDir, name)));
  }

  async *#walkVirtual(hasReal: (hex: string) => boolean): AsyncIterable<ContentInfo> {
    const virtual = await readdir(this.#virtualDir).catch((err: unknown) => {
      if (isErrno(err, 'ENOENT')) return [] as string[];
      throw err;
    });
    virtual.sort();
    for (const name of virtual) {
      const digest = `sha256:${name}`;
      if (!isDigest(digest) || hasReal(name)) continue;
      const rec = await this.#virtualRecord(digest);
      if (rec !== undefined) yield { digest, size: rec.size, virtual: rec };
    }
  }

  /**
   * Removes abandoned ingests: those whose owner process is dead, and (when
   * `olderThanMs` is given) those not written for that long, unless a writer of this
   * process holds them. Returns how many were removed.
   */
  async cleanupIngest(opts: { olderThanMs?: number } = {}): Promise<number> {
    const now = Date.now();
    let removed = 0;
    for (const name of await readdir(this.#ingestDir)) {
      if (this.#active.has(name)) continue;
      const dir = join(this.#ingestDir, name);
      let abandoned: boolean;
      if (name.startsWith('.trash-')) {
        abandoned = true;
      } else {
        const owner = name.startsWith('.tmp-')
          ? { pid: Number(name.split('-')[1]) }
          : await readOwner(dir);
        const ownerDead = owner === undefined || owner.pid === process.pid || !pidAlive(owner.pid);
        abandoned = ownerDead;
        if (!abandoned && opts.olderThanMs !== undefined) {
          abandoned = now - (await lastModified(dir)) > opts.olderThanMs;
        }
        // A directory with no owner yet may be a writer between mkdir and rename: spare young ones.
        if (owner === undefined && now - (await lastModified(dir)) < 60_000) abandoned = false;
      }
      if (!abandoned) continue;
      await rm(dir, { recursive: true, force: true });
      removed++;
    }
    return removed;
  }
}

async function readOwner(dir: string): Promise<IngestOwner | undefined> {
  try {
    const v: unknown = JSON.parse(await readFile(join(dir, 'owner'), 'utf8'));
    if (typeof v === 'object' && v !== null && typeof (v as IngestOwner).pid === 'number') return v as IngestOwner;
    return undefined;
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR') || err instanceof SyntaxError) return undefined;
    throw err;
  }
}

async function lastModified(dir: string): Promise<number> {
  let latest = 0;
  for (const p of [dir, join(dir, 'data'), join(dir, 'owner')]) {
    try {
      latest = Math.max(latest, (await stat(p)).mtimeMs);
    } catch (err) {
      if (!isErrno(err, 'ENOENT', 'ENOTDIR')) throw err;
    }
  }
  return latest;
}

class FileContentWriter implements ContentWriter {
  readonly ref: string;
  readonly #dir: string;
  readonly #blobDir: string;
  readonly #release: () => void;
  #fh: FileHandle | undefined;
  readonly #hash: Hash = createHash('sha256');
  #size = 0;
  #staging: Buffer | undefined;
  #stagingLen = 0;
  #state: 'open' | 'committed' | 'aborted' = 'open';
  #tail: Promise<void> = Promise.resolve();
  /** First write failure: the file no longer matches the hash, so commit must fail. */
  #failure: unknown;
  #released = false;
  /** Bytes handed to the file since the last background fdatasync started. */
  #unsynced = 0;
  #earlySync: Promise<void> | undefined;

  constructor(ref: string, dir: string, fh: FileHandle, blobDir: string, release: () => void) {
    this.ref = ref;
    this.#dir = dir;
    this.#fh = fh;
    this.#blobDir = blobDir;
    this.#release = release;
  }

  #checkOpen(): void {
    if (this.#state !== 'open') throw new WriterClosedError(this.ref, this.#state);
  }

  write(chunk: Uint8Array): Promise<void> {
    if (this.#state !== 'open') return Promise.reject(new WriterClosedError(this.ref, this.#state));
    const next = this.#tail.then(() => this.#write(chunk)).catch((err: unknown) => {
      this.#failure ??= err;
      throw err;
    });
    this.#tail = next.catch(() => undefined);
    return next;
  }

  async #write(chunk: Uint8Array): Promise<void> {
    this.#checkOpen();
    if (this.#failure !== undefined) throw this.#failure;
    this.#hash.update(chunk);
    this.#size += chunk.byteLength;
    if (chunk.byteLength >= DIRECT_WRITE_MIN) {
      await this.#flush();
      await this.#writeAll(chunk);
      return;
    }
    this.#staging ??= Buffer.allocUnsafe(STAGING_SIZE);
    if (this.#stagingLen + chunk.byteLength > STAGING_SIZE) await this.#flush();
    this.#staging.set(chunk, this.#stagingLen);
    this.#stagingLen += chunk.byteLength;
  }

  async #flush(): Promise<void> {
    if (this.#stagingLen === 0 || this.#staging === undefined) return;
    const n = this.#stagingLen;
    this.#stagingLen = 0;
    await this.#writeAll(this.#staging.subarray(0, n));
  }

  async #writeAll(buf: Uint8Array): Promise<void> {
    const fh = this.#fh;
    if (fh === undefined) throw new WriterClosedError(this.ref, 'aborted');
    let off = 0;
    while (off < buf.byteLength) {
      const { bytesWritten } = await fh.write(buf, off, buf.byteLength - off);
      off += bytesWritten;
    }
    this.#unsynced += buf.byteLength;
    if (this.#unsynced >= EARLY_SYNC_BYTES && this.#earlySync === undefined) {
      this.#unsynced = 0;
      this.#earlySync = fh.datasync().then(
        () => {
          this.#earlySync = undefined;
        },
        (err: unknown) => {
          this.#earlySync = undefined;
          this.#failure ??= err;
        },
      );
    }
  }

  /** Waits for a background fdatasync (its failure becomes the writer's failure). */
  async #settleEarlySync(): Promise<void> {
    while (this.#earlySync !== undefined) await this.#earlySync;
  }

  async commit(expect: { size?: number; digest?: Digest } = {}): Promise<ContentInfo> {
    this.#checkOpen();
    await this.#tail;
    this.#checkOpen();
    this.#state = 'committed';
    try {
      if (this.#failure !== undefined) throw this.#failure;
      await this.#flush();
      await this.#settleEarlySync();
      if (this.#failure !== undefined) throw this.#failure;
      const fh = this.#fh!;
      await fh.sync();
      await fh.close();
      this.#fh = undefined;
      const digest: Digest = `sha256:${this.#hash.digest('hex')}`;
      if (expect.size !== undefined && expect.size !== this.#size) throw new SizeMismatchError(expect.size, this.#size);
      if (expect.digest !== undefined && expect.digest !== digest) throw new DigestMismatchError(expect.digest, digest);
      const target = join(this.#blobDir, digestHex(digest));
      let exists = false;
      try {
        exists = (await stat(target)).isFile();
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
      if (!exists) {
        crashPoint('blob-commit');
        await rename(join(this.#dir, 'data'), target);
        crashPoint('blob-committed');
        await fsyncDir(this.#blobDir);
      }
      return { digest, size: this.#size };
    } catch (err) {
      this.#state = 'aborted';
      throw err;
    } finally {
      await this.#cleanup();
    }
  }

  async abort(): Promise<void> {
    if (this.#state === 'open') this.#state = 'aborted';
    await this.#tail;
    await this.#cleanup();
  }

  async #cleanup(): Promise<void> {
    await this.#settleEarlySync();
    const fh = this.#fh;
    this.#fh = undefined;
    this.#staging = undefined;
    if (fh !== undefined) await fh.close();
    await rm(this.#dir, { recursive: true, force: true });
    if (!this.#released) {
      this.#released = true;
      this.#release();
    }
  }
}
