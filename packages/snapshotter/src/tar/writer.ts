/**
 * Deterministic tar writer (ustar headers + binary-safe PAX records). tar-stream's pack
 * was the first choice but cannot carry binary PAX values (it encodes them as UTF-8
 * strings and refuses a body for a hand-made 'x' entry), which corrupts
 * `security.capability`; the framing here is ~60 lines and fully under our control.
 */
import { createReadStream } from 'node:fs';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { encodePaxRecords } from './pax.js';
import type { TarEntry } from './types.js';

const MAX_OCTAL_ID = 0o7777777;
const SMALL_FILE = 256 * 1024;
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

function padding(size: number): Buffer {
  return Buffer.alloc((512 - (size % 512)) % 512);
}

/**
 * Writes `entries` (already sorted and normalised by the caller) as an uncompressed tar
 * stream. File contents are streamed from `entry.source`; memory stays flat, and the
 * walk is pulled by the consumer (backpressure).
 */
export function packEntries(entries: Iterable<TarEntry> | AsyncIterable<TarEntry>, opts: { signal?: AbortSignal } = {}): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    let sinceYield = 0;
    for await (const e of entries) {
      // Small files: one sync read (open+read+close in µs) beats three thread-pool
      // round trips; the event loop gets a turn every SLICE small files.
      const data = e.type === 'file' && e.size > 0 && e.size <= SMALL_FILE && e.source !== undefined ? readFileSync(e.source) : undefined;
      if (data && ++sinceYield % SLICE === 0) await new Promise<void>((r) => setImmediate(r));
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
      if (records.length > 0) {
        const body = encodePaxRecords(records);
        yield ustarHeader({ name: 'PaxHeader', type: 'pax', mode: 0o644, uid: 0, gid: 0, size: body.length, mtime, linkname: '', devmajor: 0, devminor: 0 });
        yield body;
        yield padding(body.length);
      }
      const header = ustarHeader({
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
      });
      if (data !== undefined) {
        const body = data;
        if (body.length !== size) throw new Error(`file ${e.source} changed while archiving: expected ${size} bytes, found ${body.length}`);
        yield Buffer.concat([header, body, padding(size)]);
      } else if (size > 0) {
        yield header;
        if (e.source === undefined) throw new Error(`tar entry ${e.path}: a non-empty file needs a source`);
        let written = 0;
        const rs = createReadStream(e.source, { end: size - 1, highWaterMark: 256 * 1024, ...(opts.signal ? { signal: opts.signal } : {}) });
        for await (const chunk of rs as AsyncIterable<Buffer>) {
          written += chunk.length;
          yield chunk;
        }
        if (written !== size) throw new Error(`file ${e.source} changed while archiving: expected ${size} bytes, found ${written}`);
        yield padding(size);
      } else {
        yield header;
      }
    }
    yield Buffer.alloc(1024);
  }
  return Readable.from(gen(), { objectMode: false });
}
