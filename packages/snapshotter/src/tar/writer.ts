/**
 * Deterministic tar writer (ustar headers + binary-safe PAX records). tar-stream's pack
 * was the first choice but cannot carry binary PAX values (it encodes them as UTF-8
 * strings and refuses a body for a hand-made 'x' entry), which corrupts
 * `security.capability`; the framing here is ~60 lines and fully under our control.
 */
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { Readable } from 'node:stream';
import { encodePaxRecords } from './pax.js';
import type { TarEntry } from './types.js';

const MAX_OCTAL_ID = 0o7777777;
const SLICE = 256;


function isAscii(s: string): boolean {
  return /^[\x01-\x7f]*$/.test(s);
}

/** Mirrors tar-stream's ustar name split so we know when it would fall back to its own PAX. */
function fitsUstarName(name: string): boolean {
  if (!isAscii(name)) return false;
  let n = name;
  let prefix = '';
  while (n.length > 100) {
    const i = n.indexOf('/');
    if (i === -1) return false;
    prefix += prefix ? '/' + n.slice(0, i) : n.slice(0, i);
    n = n.slice(i + 1);
  }
  return n.length <= 100 && prefix.length <= 155;
}

/** A short ASCII stand-in for the ustar field; readers use the PAX `path`/`linkpath`. */
function placeholder(name: string): string {
  const base = name.split('/').filter(Boolean).pop() ?? 'x';
  return base.replace(/[^\x20-\x7e]/g, '_').slice(-90) || 'x';
}

const TYPEFLAG: Record<TarEntry['type'] | 'pax', string> = {
  file: '0',
  link: '1',
  symlink: '2',
  'character-device': '3',
  'block-device': '4',
  directory: '5',
  fifo: '6',
  pax: 'x',
};

function octal(buf: Buffer, off: number, len: number, value: number): void {
  const s = Math.max(0, Math.floor(value)).toString(8);
  if (s.length > len - 1) {
    // base-256 (GNU/POSIX-2008 extension) for sizes beyond the octal field
    buf[off] = 0x80;
    let v = value;
    for (let i = len - 1; i > 0; i--) {
      buf[off + i] = v % 256;
      v = Math.floor(v / 256);
    }
    return;
  }
  buf.write(s.padStart(len - 1, '0') + '\0', off, len, 'ascii');
}

interface RawHeader {
  name: string;
  type: TarEntry['type'] | 'pax';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
}

/** One 512-byte ustar header; name/linkname must already fit (ASCII, split rules). */
function ustarHeader(h: RawHeader): Buffer {
  const b = Buffer.alloc(512);
  let name = h.name;
  let prefix = '';
  while (name.length > 100) {
    const i = name.indexOf('/');
    prefix += prefix ? '/' + name.slice(0, i) : name.slice(0, i);
    name = name.slice(i + 1);
  }
  b.write(name, 0, 100, 'ascii');
  octal(b, 100, 8, h.mode & 0o7777);
  octal(b, 108, 8, h.uid);
  octal(b, 116, 8, h.gid);
  octal(b, 124, 12, h.size);
  octal(b, 136, 12, h.mtime);
  b.fill(0x20, 148, 156);
  b.write(TYPEFLAG[h.type], 156, 1, 'ascii');
  b.write(h.linkname, 157, 100, 'ascii');
  b.write('ustar\x0000', 257, 8, 'latin1');
  octal(b, 329, 8, h.devmajor);
  octal(b, 337, 8, h.devminor);
  b.write(prefix, 345, 155, 'ascii');
  let sum = 0;
  for (const x of b) sum += x;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return b;
}

/** Output chunk size: file bodies are read straight into these (one copy, no per-file buffers). */
const CHUNK = 1 << 20;
const ZERO_BLOCK = Buffer.alloc(1024);

/**
 * Fills 1 MiB output chunks. Headers are copied and file bodies are read (readSync)
 * straight into the current chunk; a full chunk is handed to the consumer and a fresh
 * one started, so nothing handed out is ever written again.
 */
class ChunkFiller {
  buf: Buffer = Buffer.allocUnsafeSlow(CHUNK);
  len = 0;
  readonly ready: Buffer[] = [];
  private rotate(): void {
    this.ready.push(this.buf);
    this.buf = Buffer.allocUnsafeSlow(CHUNK);
    this.len = 0;
  }
  put(b: Uint8Array): void {
    let off = 0;
    while (off < b.length) {
      if (this.len === CHUNK) this.rotate();
      const n = Math.min(b.length - off, CHUNK - this.len);
      this.buf.set(off === 0 && n === b.length ? b : b.subarray(off, off + n), this.len);
      this.len += n;
      off += n;
    }
  }
  zeros(n: number): void {
    while (n > 0) {
      if (this.len === CHUNK) this.rotate();
      const k = Math.min(n, CHUNK - this.len);
      this.buf.fill(0, this.len, this.len + k);
      this.len += k;
      n -= k;
    }
  }
  /** Reads up to `max` bytes of `fd` into the current chunk (which must have room); returns the count. */
  read(fd: number, max: number): number {
    if (this.len === CHUNK) this.rotate();
    const n = readSync(fd, this.buf, this.len, Math.min(max, CHUNK - this.len), null);
    this.len += n;
    return n;
  }
  /** Hands out the full chunks, and the partial one when `all`. */
  take(all: boolean): Buffer[] {
    if (all && this.len > 0) {
      this.ready.push(this.buf.subarray(0, this.len));
      this.buf = Buffer.allocUnsafeSlow(CHUNK);
      this.len = 0;
    }
    return this.ready.splice(0);
  }
}
const PROBE = Buffer.alloc(1);

/**
 * Writes `entries` (already sorted and normalised by the caller) as an uncompressed tar
 * stream. File contents are read from `entry.source` with synchronous reads straight
 * into 1 MiB output chunks (measured: per-file buffers and promise round trips cost more
 * than the reads, see README); memory stays flat, and the walk is pulled by the consumer
 * (backpressure: at most one chunk is produced ahead). Each read blocks the event loop
 * for at most one chunk's worth of bytes.
 */
export function packEntries(entries: Iterable<TarEntry> | AsyncIterable<TarEntry>, opts: { signal?: AbortSignal } = {}): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    const out = new ChunkFiller();
    let sinceYield = 0;
    for await (const e of entries) {
      opts.signal?.throwIfAborted();
      const name = e.type === 'directory' ? `${e.path}/` : e.path;
      const records: Array<[string, string | Buffer]> = [];
      let ustarName = name;
      let ustarLink = e.type === 'link' || e.type === 'symlink' ? (e.linkname ?? '') : '';
      if (!fitsUstarName(name)) {
        records.push(['path', name]);
        ustarName = placeholder(name) + (e.type === 'directory' ? '/' : '');
      }
      if (ustarLink !== '' && (!isAscii(ustarLink) || Buffer.byteLength(ustarLink) > 100)) {
        records.push(['linkpath', ustarLink]);
        ustarLink = placeholder(ustarLink);
      }
      if (e.uid > MAX_OCTAL_ID) records.push(['uid', String(e.uid)]);
      if (e.gid > MAX_OCTAL_ID) records.push(['gid', String(e.gid)]);
      if (e.xattrs && e.xattrs.size > 0) {
        const names = [...e.xattrs.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        for (const n of names) records.push([`SCHILY.xattr.${n}`, e.xattrs.get(n)!]);
      }
      const mtime = Math.max(0, Math.floor(e.mtime));
      const size = e.type === 'file' ? e.size : 0;
      if (size > 0 && e.source === undefined) throw new Error(`tar entry ${e.path}: a non-empty file needs a source`);
      // Opened before anything of the entry is written, so a vanished file fails cleanly.
      const fd = size > 0 ? openSync(e.source!, constants.O_RDONLY | constants.O_NOFOLLOW) : -1;
      try {
        if (records.length > 0) {
          const body = encodePaxRecords(records);
          out.put(ustarHeader({ name: 'PaxHeader', type: 'pax', mode: 0o644, uid: 0, gid: 0, size: body.length, mtime, linkname: '', devmajor: 0, devminor: 0 }));
          out.put(body);
          out.zeros((512 - (body.length % 512)) % 512);
        }
        out.put(
          ustarHeader({
            name: ustarName,
            type: e.type,
            mode: e.mode,
            uid: Math.min(e.uid, MAX_OCTAL_ID),
            gid: Math.min(e.gid, MAX_OCTAL_ID),
            size,
            mtime,
            linkname: ustarLink,
            devmajor: e.devmajor ?? 0,
            devminor: e.devminor ?? 0,
          }),
        );
        let yielded = false;
        if (fd >= 0) {
          let left = size;
          while (left > 0) {
            const n = out.read(fd, left);
            if (n === 0) throw new Error(`file ${e.source!} changed while archiving: expected ${size} bytes, found ${size - left}`);
            left -= n;
            // a big file goes out chunk by chunk: memory stays at one chunk ahead
            for (const c of out.take(false)) {
              yielded = true;
              yield c;
            }
          }
          if (readSync(fd, PROBE, 0, 1, null) !== 0) throw new Error(`file ${e.source!} changed while archiving: expected ${size} bytes, found more`);
          out.zeros((512 - (size % 512)) % 512);
        }
        for (const c of out.take(false)) {
          yielded = true;
          yield c;
        }
        // Many small entries fill a chunk slowly: give the event loop a turn now and then.
        if (!yielded && ++sinceYield % SLICE === 0) await new Promise<void>((r) => setImmediate(r));
      } finally {
        if (fd >= 0) closeSync(fd);
      }
    }
    out.put(ZERO_BLOCK);
    for (const c of out.take(true)) yield c;
  }
  return Readable.from(gen(), { objectMode: false, highWaterMark: CHUNK });
}
