/**
 * Deterministic tar writer: framing, padding and content streaming come from
 * tar-stream's pack; PAX records (long names, binary xattrs) are built here because
 * tar-stream encodes PAX values as UTF-8 strings, which corrupts binary xattr values
 * such as `security.capability`.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { encodePaxRecords } from './pax.js';
import type { TarEntry } from './types.js';

const MAX_OCTAL_ID = 0o7777777;

const TYPE_BITS: Record<TarEntry['type'], number> = {
  file: 0o100000,
  link: 0o100000,
  symlink: 0o120000,
  'character-device': 0o020000,
  'block-device': 0o060000,
  directory: 0o040000,
  fifo: 0o010000,
};

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

/** Tar-stream header name: directories end with '/', as Docker writes them. */
function headerName(e: TarEntry): string {
  return e.type === 'directory' ? `${e.path}/` : e.path;
}

type PackHeader = Parameters<tarStream.Pack['entry']>[0];

function entryAsync(pack: tarStream.Pack, header: PackHeader, body?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (body !== undefined) pack.entry(header, body, (err) => (err ? reject(err) : resolve()));
    else pack.entry(header, (err) => (err ? reject(err) : resolve()));
  });
}

async function writeFileEntry(pack: tarStream.Pack, header: PackHeader, source: string, size: number, signal?: AbortSignal): Promise<void> {
  let done!: Promise<void>;
  const sink = await new Promise<ReturnType<tarStream.Pack['entry']>>((resolve) => {
    done = new Promise<void>((res, rej) => {
      resolve(pack.entry(header, (err) => (err ? rej(err) : res())));
    });
  });
  let written = 0;
  const rs = createReadStream(source, { end: size - 1, highWaterMark: 256 * 1024, signal });
  try {
    for await (const chunk of rs as AsyncIterable<Buffer>) {
      written += chunk.length;
      if (!sink.write(chunk)) await new Promise<void>((r) => sink.once('drain', () => r()));
    }
  } catch (err) {
    sink.destroy(err as Error);
    throw err;
  }
  if (written !== size) {
    const err = new Error(`file ${source} changed while archiving: expected ${size} bytes, found ${written}`);
    sink.destroy(err);
    throw err;
  }
  sink.end(undefined as never);
  await done;
}

/**
 * Writes `entries` (already sorted and normalised by the caller) as an uncompressed tar
 * stream. File contents are streamed from `entry.source`; memory stays flat.
 */
export function packEntries(entries: Iterable<TarEntry> | AsyncIterable<TarEntry>, opts: { signal?: AbortSignal } = {}): Readable {
  const pack = tarStream.pack();
  (async () => {
    for await (const e of entries) {
      opts.signal?.throwIfAborted();
      const name = headerName(e);
      const records: Array<[string, string | Buffer]> = [];
      let ustarName = name;
      let ustarLink = e.linkname ?? '';
      if (!fitsUstarName(name)) {
        records.push(['path', name]);
        ustarName = placeholder(name) + (e.type === 'directory' ? '/' : '');
      }
      if (e.linkname !== undefined && (!isAscii(e.linkname) || Buffer.byteLength(e.linkname) > 100)) {
        records.push(['linkpath', e.linkname]);
        ustarLink = placeholder(e.linkname);
      }
      if (e.uid > MAX_OCTAL_ID) records.push(['uid', String(e.uid)]);
      if (e.gid > MAX_OCTAL_ID) records.push(['gid', String(e.gid)]);
      if (e.xattrs && e.xattrs.size > 0) {
        const names = [...e.xattrs.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        for (const n of names) records.push([`SCHILY.xattr.${n}`, e.xattrs.get(n)!]);
      }
      const mtime = new Date(Math.max(0, Math.floor(e.mtime)) * 1000);
      if (records.length > 0) {
        const body = encodePaxRecords(records);
        await entryAsync(pack, { name: 'PaxHeader', type: 'pax-header' as never, size: body.length, mode: 0o644, uid: 0, gid: 0, mtime, uname: '', gname: '' }, body);
      }
      const header: PackHeader = {
        name: ustarName,
        type: e.type,
        // tar-stream replaces a falsy mode with 0644; the type bits keep mode 0 intact
        // (the header field is masked to 0o7777).
        mode: (e.mode & 0o7777) | TYPE_BITS[e.type],
        uid: Math.min(e.uid, MAX_OCTAL_ID),
        gid: Math.min(e.gid, MAX_OCTAL_ID),
        size: e.type === 'file' ? e.size : 0,
        mtime,
        uname: '',
        gname: '',
        devmajor: e.devmajor ?? 0,
        devminor: e.devminor ?? 0,
      };
      if (e.type === 'link' || e.type === 'symlink') header.linkname = ustarLink;
      if (e.type === 'file' && e.size > 0) {
        if (e.source === undefined) throw new Error(`tar entry ${e.path}: a non-empty file needs a source`);
        await writeFileEntry(pack, header, e.source, e.size, opts.signal);
      } else {
        await entryAsync(pack, header, e.type === 'file' ? Buffer.alloc(0) : undefined);
      }
    }
    pack.finalize();
  })().catch((err: Error) => pack.destroy(err));
  // Readable.from pulls on demand, so a slow consumer back-pressures the whole walk.
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
}
