/**
 * Reusing a previous layer's tar entries in a layer export. A rerun of a COPY hardlinks
 * the unchanged files from the previous run's committed snapshot (solver: `relink.ts`);
 * the tar entries of those files are the previous layer's entries, byte for byte. Instead
 * of opening and reading every such file again, the export copies the entry (header,
 * body, padding) from the previous layer's uncompressed blob, read once, sequentially.
 *
 * Why the bytes are the same: the caller names, per path, the inode the path had in a
 * committed snapshot whose top layer is that blob; the snapshot's upper directory holds
 * exactly the blob's files (it was exported as the blob, or unpacked from it) and
 * committed snapshots never change, so that inode's content is the blob entry's body.
 * An entry is reused only when (1) the path still has that inode in the snapshot being
 * exported, (2) the header bytes the writer would write (PAX + ustar: path, mode, owner,
 * size, mtime, xattrs) equal the blob entry's header bytes, and (3) the blob entry is a
 * regular file. Every byte of the blob is hashed as it is read and checked against its
 * digest when the archive is complete; on a mismatch the export starts over without reuse,
 * so a damaged blob never leaks into a new layer. Nothing new is stored: the blob's own
 * headers are its index (parsed in the same sequential pass).
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import type { Digest } from '../content/index.js';
import { decodePaxRecords } from '../tar/pax.js';
import { cstr, num } from '../tar/reader.js';
import type { TarEntry } from '../tar/types.js';
import { comparePaths } from '../tar/walk.js';
import type { EntryReuse } from '../tar/writer.js';

/** What a layer export may take ready-made entries from (see the module comment). */
export interface LayerReuse {
  /** Digest of an uncompressed layer tar in the content store: the previous layer's diffID. */
  blob: Digest;
  /**
   * Tar paths (relative, no leading `/`) of regular files in the exported snapshot that
   * are hardlinks of the same paths in a committed snapshot whose top layer is `blob`,
   * each with the inode number it has there.
   */
  inodes: ReadonlyMap<string, bigint>;
}

/** The blob's bytes did not hash to its digest: the reused entries must be discarded. */
export class ReuseSourceError extends Error {
  override name = 'ReuseSourceError';
}

const BLOCK = 512;
const WINDOW = 1 << 20;
const MAX_EXTENDED_HEADER = 1 << 20;

interface OldEntry {
  path: string;
  /** blob offset of the entry's first header block (its PAX header, if any) */
  start: number;
  headerLen: number;
  /** header + body + padding */
  total: number;
  file: boolean;
}

const padded = (n: number): number => Math.ceil(n / BLOCK) * BLOCK;

/**
 * {@link EntryReuse} over an uncompressed tar file. The file is read once, front to back,
 * in 1 MiB windows; entries are matched by path in tar order (the exporter writes paths
 * sorted bytewise, so a merge finds them), and every byte is hashed on the way.
 */
export class TarFileReuse implements EntryReuse {
  private readonly hash: Hash = createHash('sha256');
  private buf: Buffer = Buffer.allocUnsafeSlow(WINDOW);
  /** blob offset of buf[0] */
  private bufStart = 0;
  private bufLen = 0;
  /** next blob offset not yet consumed */
  private pos = 0;
  /** the blob entry at `pos`: undefined = not parsed yet, null = no more usable entries */
  private cur: OldEntry | null | undefined;
  /** entries copied from the blob */
  reused = 0;

  constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly digest: Digest,
    private readonly allowed: ReadonlySet<string>,
  ) {}

  /** Reads the next piece of the file after what is buffered; returns the byte count. */
  private readMore(): number {
    if (this.bufLen === this.buf.length) return 0;
    const n = readSync(this.fd, this.buf, this.bufLen, this.buf.length - this.bufLen, this.bufStart + this.bufLen);
    if (n > 0) this.hash.update(this.buf.subarray(this.bufLen, this.bufLen + n));
    this.bufLen += n;
    return n;
  }

  /** Makes the `n` bytes at `pos` available in the buffer; false at end of file. */
  private ensure(n: number): boolean {
    if (this.pos + n <= this.bufStart + this.bufLen) return true;
    const keep = this.bufStart + this.bufLen - this.pos;
    if (n > this.buf.length) {
      const bigger = Buffer.allocUnsafeSlow(padded(n));
      this.buf.copy(bigger, 0, this.pos - this.bufStart, this.bufLen);
      this.buf = bigger;
    } else {
      this.buf.copyWithin(0, this.pos - this.bufStart, this.bufLen);
    }
    this.bufStart = this.pos;
    this.bufLen = keep;
    while (this.bufLen < n) if (this.readMore() === 0) return false;
    return true;
  }

  /** Consumes `n` bytes at `pos` (reading and hashing what is not buffered); false at end of file. */
  private advance(n: number): boolean {
    let left = n;
    for (;;) {
      const avail = this.bufStart + this.bufLen - this.pos;
      if (avail >= left) {
        this.pos += left;
        return true;
      }
      this.pos += avail;
      left -= avail;
      this.bufStart = this.pos;
      this.bufLen = 0;
      if (this.readMore() === 0) return false;
    }
  }

  private at(rel: number, n: number): Buffer {
    const o = this.pos - this.bufStart + rel;
    return this.buf.subarray(o, o + n);
  }

  /** Parses the entry at `pos` without consuming it; null at the end or on anything unexpected. */
  private parse(): OldEntry | null {
    let rel = 0;
    let longName: string | undefined;
    let paxPath: string | undefined;
    let paxSize: number | undefined;
    try {
      for (;;) {
        if (!this.ensure(rel + BLOCK)) return null;
        const h = this.at(rel, BLOCK);
        if (h.every((x) => x === 0)) return null;
        const flag = String.fromCharCode(h[156]!);
        const size = num(h.subarray(124, 136), this.pos + rel);
        if (flag === 'x' || flag === 'L' || flag === 'K') {
          if (size > MAX_EXTENDED_HEADER || !this.ensure(rel + BLOCK + padded(size))) return null;
          const body = this.at(rel + BLOCK, size);
          if (flag === 'x') {
            const recs = decodePaxRecords(body);
            if (!recs) return null;
            const p = recs.get('path');
            if (p !== undefined) paxPath = p.toString('utf8');
            const s = recs.get('size');
            if (s !== undefined) paxSize = Number(s.toString('utf8'));
          } else if (flag === 'L') {
            longName = cstr(body);
          }
          rel += BLOCK + padded(size);
          continue;
        }
        // a global header ('g') or anything else unexpected: stop reusing
        if (!'01234567\0'.includes(flag)) return null;
        let name = cstr(h.subarray(0, 100));
        if (h.subarray(257, 263).toString('latin1') === 'ustar\0') {
          const prefix = cstr(h.subarray(345, 500));
          if (prefix) name = `${prefix}/${name}`;
        }
        name = paxPath ?? longName ?? name;
        const file = flag === '0' || flag === '\0';
        const bodySize = file || flag === '7' ? (paxSize ?? size) : 0;
        if (!Number.isSafeInteger(bodySize) || bodySize < 0) return null;
        const headerLen = rel + BLOCK;
        return { path: name.replace(/\/+$/, ''), start: this.pos, headerLen, total: headerLen + padded(bodySize), file };
      }
    } catch {
      return null; // malformed numbers: the digest check at the end decides what that means
    }
  }

  /** The remaining bytes of an entry, window by window; the consumer copies each piece before the next. */
  private *pieces(total: number): Generator<Uint8Array> {
    let left = total;
    while (left > 0) {
      if (this.bufStart + this.bufLen === this.pos) {
        this.bufStart = this.pos;
        this.bufLen = 0;
        if (this.readMore() === 0) throw new ReuseSourceError(`layer blob ${this.digest} ends inside an entry`);
      }
      const k = Math.min(left, this.bufStart + this.bufLen - this.pos);
      yield this.at(0, k);
      this.pos += k;
      left -= k;
    }
  }

  take(e: TarEntry, header: Buffer): Iterable<Uint8Array> | undefined {
    if (!this.allowed.has(e.path)) return undefined;
    // the common case: the blob entry at the cursor has exactly these header blocks (no parse)
    if (this.cur !== null && this.ensure(header.length) && this.at(0, header.length).equals(header)) {
      this.cur = undefined;
      this.reused++;
      return this.pieces(header.length + padded(e.size));
    }
    for (;;) {
      if (this.cur === undefined) this.cur = this.parse();
      if (this.cur === null) return undefined;
      const c = comparePaths(this.cur.path, e.path);
      if (c > 0) return undefined;
      if (c === 0) break;
      const skipped = this.cur.total;
      this.cur = this.advance(skipped) ? undefined : null;
    }
    const old = this.cur;
    if (!old.file || old.headerLen !== header.length || !this.ensure(header.length) || !this.at(0, header.length).equals(header)) return undefined;
    this.cur = undefined;
    this.reused++;
    return this.pieces(old.total);
  }

  finish(): void {
    this.bufStart += this.bufLen;
    this.bufLen = 0;
    while (this.readMore() > 0) {
      this.bufStart += this.bufLen;
      this.bufLen = 0;
    }
    const got = `sha256:${this.hash.digest('hex')}`;
    if (this.bufStart !== this.size || got !== this.digest) {
      throw new ReuseSourceError(`layer blob ${this.digest} read as ${got} (${this.bufStart} of ${this.size} bytes): not reused`);
    }
  }
}

/**
 * Opens the tar at `path` for reuse; undefined when it is not a regular file (absent, or a
 * blob the content store does not keep as a file), in which case the export reads every file.
 */
export function openTarReuse(path: string, digest: Digest, allowed: ReadonlySet<string>): { reuse: TarFileReuse; close: () => void } | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    return undefined;
  }
  return { reuse: new TarFileReuse(fd, st.size, digest, allowed), close: () => closeSync(fd) };
}
