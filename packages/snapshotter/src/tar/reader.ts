/**
 * Streaming tar reader (ustar, PAX, GNU long names). Written here rather than using
 * tar-stream's extract because that decodes PAX values as UTF-8, corrupting binary
 * xattrs; a layer applier must restore `security.capability` byte for byte.
 */
import { InvalidTarError } from '../errors.js';
import { utf8Name } from '../util/file-names.js';
import { decodePaxRecords } from './pax.js';
import type { TarEntry, TarEntryType } from './types.js';

const BLOCK = 512;
/** Most bytes of one PAX, GNU long-name or long-link header (Go's archive/tar uses 1 MiB too). */
const MAX_EXTENDED_HEADER = 1 << 20;

/** A read entry: header fields plus a one-shot body iterator (consume it or it is skipped). */
export interface ReadEntry extends Omit<TarEntry, 'source'> {
  /** The raw name from the archive (before any normalisation). */
  rawName: string;
  body: AsyncIterable<Buffer>;
}

class ByteSource {
  private readonly it: AsyncIterator<Buffer | Uint8Array | string>;
  private buf: Buffer = Buffer.alloc(0);
  private eof = false;
  offset = 0;
  constructor(src: AsyncIterable<Buffer | Uint8Array | string>) {
    this.it = src[Symbol.asyncIterator]();
  }
  private async fill(min: number): Promise<void> {
    while (this.buf.length < min && !this.eof) {
      const r = await this.it.next();
      if (r.done) this.eof = true;
      else {
        const chunk = typeof r.value === 'string' ? Buffer.from(r.value) : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
        this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      }
    }
  }
  /** Exactly n bytes, or fewer only at end of stream. */
  async read(n: number): Promise<Buffer> {
    await this.fill(n);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(out.length);
    this.offset += out.length;
    return out;
  }
  /** Up to n bytes as soon as any are available (empty at end of stream). */
  async readSome(n: number): Promise<Buffer> {
    await this.fill(1);
    const out = this.buf.subarray(0, Math.min(n, this.buf.length));
    this.buf = this.buf.subarray(out.length);
    this.offset += out.length;
    return out;
  }
  async drain(): Promise<void> {
    this.buf = Buffer.alloc(0);
    while (!this.eof) {
      const r = await this.it.next();
      if (r.done) this.eof = true;
    }
  }
}

/** A NUL-terminated header field as UTF-8. */
export function cstr(b: Buffer): string {
  const z = b.indexOf(0);
  return (z < 0 ? b : b.subarray(0, z)).toString('utf8');
}

/** A NUL-terminated name field (path or link target): UTF-8, or UnsupportedFileNameError. */
function cname(b: Buffer): string {
  const z = b.indexOf(0);
  return utf8Name(z < 0 ? b : b.subarray(0, z), 'tar entry');
}

/** A numeric header field (octal, or GNU base-256); `off` is for the error message. */
export function num(b: Buffer, off: number): number {
  if (b[0]! & 0x80) {
    // base-256 (GNU); positive values only
    let v = 0;
    for (let i = 1; i < b.length; i++) v = v * 256 + b[i]!;
    return v;
  }
  const s = cstr(b).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new InvalidTarError(off, `expected an octal number, found ${JSON.stringify(s)}`);
  return Number.parseInt(s, 8);
}

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
};

/** Iterates the entries of an uncompressed tar stream. */
export async function* readTar(src: AsyncIterable<Buffer | Uint8Array | string>): AsyncGenerator<ReadEntry> {
  const s = new ByteSource(src);
  let pax: Map<string, Buffer> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    const at = s.offset;
    const h = await s.read(BLOCK);
    if (h.length === 0) return; // tolerate missing end-of-archive blocks
    if (h.length < BLOCK) throw new InvalidTarError(at, `expected a 512-byte header, found ${h.length} bytes`);
    if (h.every((x) => x === 0)) {
      await s.drain();
      return;
    }
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
    const want = num(h.subarray(148, 156), at);
    if (sum !== want) throw new InvalidTarError(at, `header checksum mismatch: expected ${want}, found ${sum}`);
    const flag = String.fromCharCode(h[156]!);
    let size = num(h.subarray(124, 136), at);
    if (pax?.has('size')) size = Number(pax.get('size')!.toString('utf8'));
    if (!Number.isSafeInteger(size) || size < 0) throw new InvalidTarError(at, `expected an entry size between 0 and ${Number.MAX_SAFE_INTEGER}, found ${size}`);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > MAX_EXTENDED_HEADER) throw new InvalidTarError(at, `expected an extended header of at most ${MAX_EXTENDED_HEADER} bytes, found one of ${size}`);
      const data = await s.read(padded);
      if (data.length < padded) throw new InvalidTarError(at, 'truncated extended header');
      const body = data.subarray(0, size);
      if (flag === 'x') {
        const recs = decodePaxRecords(body);
        if (!recs) throw new InvalidTarError(at, 'malformed pax record');
        pax = recs;
      } else if (flag === 'L') longName = cname(body);
      else if (flag === 'K') longLink = cname(body);
      // 'g' (global) records carry no per-entry data we honour; skipped.
      continue;
    }
    const type = TYPES[flag];
    if (type === undefined) throw new InvalidTarError(at, `unsupported entry type ${JSON.stringify(flag)}`);
    const magic = h.subarray(257, 263).toString('latin1');
    let name = cstr(h.subarray(0, 100));
    if (magic === 'ustar\0') {
      const prefix = cstr(h.subarray(345, 500));
      if (prefix) name = `${prefix}/${name}`;
    }
    let linkname = cstr(h.subarray(157, 257));
    // the header's own name fields, when no GNU or pax record replaces them, must be UTF-8
    // (checked again strictly only when the decoded name holds U+FFFD)
    if (longName === undefined && !pax?.has('path') && name.includes('\uFFFD')) {
      cname(h.subarray(0, 100));
      if (magic === 'ustar\0') cname(h.subarray(345, 500));
    }
    if (longLink === undefined && !pax?.has('linkpath') && linkname.includes('\uFFFD')) cname(h.subarray(157, 257));
    if (longName !== undefined) name = longName;
    if (longLink !== undefined) linkname = longLink;
    const xattrs = new Map<string, Buffer>();
    let uid = num(h.subarray(108, 116), at);
    let gid = num(h.subarray(116, 124), at);
    let mtime = num(h.subarray(136, 148), at);
    if (pax) {
      for (const [k, v] of pax) {
        if (k === 'path') name = utf8Name(v, 'tar entry');
        else if (k === 'linkpath') linkname = utf8Name(v, 'tar entry');
        else if (k === 'uid') uid = Number(v.toString('utf8'));
        else if (k === 'gid') gid = Number(v.toString('utf8'));
        else if (k === 'mtime') mtime = Math.floor(Number(v.toString('utf8')));
        else if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), Buffer.from(v)); // a copy: the source's buffers may be reused
      }
    }
    pax = undefined;
    longName = undefined;
    longLink = undefined;
    const bodySize = type === 'file' ? size : 0;
    let remaining = bodySize;
    const consumed = { done: false };
    const body: AsyncIterable<Buffer> = {
      async *[Symbol.asyncIterator]() {
        if (consumed.done) throw new Error('tar entry body already consumed');
        consumed.done = true;
        while (remaining > 0) {
          const chunk = await s.readSome(Math.min(remaining, 1 << 20));
          if (chunk.length === 0) throw new InvalidTarError(s.offset, `truncated file body of ${JSON.stringify(name)}`);
          remaining -= chunk.length;
          yield chunk;
        }
      },
    };
    const entry: ReadEntry = {
      rawName: name,
      path: name.replace(/\/+$/, ''),
      type,
      mode: num(h.subarray(100, 108), at) & 0o7777,
      uid,
      gid,
      size: bodySize,
      mtime,
      devmajor: num(h.subarray(329, 337), at),
      devminor: num(h.subarray(337, 345), at),
      xattrs,
      body,
    };
    if (type === 'link' || type === 'symlink') entry.linkname = linkname;
    yield entry;
    // Skip whatever the consumer left unread, plus padding.
    consumed.done = true;
    while (remaining > 0) {
      const chunk = await s.readSome(Math.min(remaining, 1 << 20));
      if (chunk.length === 0) throw new InvalidTarError(s.offset, `truncated file body of ${JSON.stringify(name)}`);
      remaining -= chunk.length;
    }
    const pad = (BLOCK - (bodySize % BLOCK)) % BLOCK;
    if (pad) await s.read(pad);
  }
}
