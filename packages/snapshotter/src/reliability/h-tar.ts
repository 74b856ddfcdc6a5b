/**
 * H-TAR for the reliability tests: raw tar headers written byte by byte, so a test can
 * emit what no well-behaved writer would (`..` names, sizes that lie, huge PAX headers,
 * base-256 sizes, duplicates). Test-only; not exported from the package.
 */

/** One raw header. `size` is what the header claims; `body` is what follows (padded). */
export interface RawEntry {
  name: string;
  /** tar typeflag: '0' file, '5' directory, '2' symlink, '1' hardlink, 'x' PAX... */
  type?: string;
  size?: number;
  /** Write the size in GNU base-256 (for claims above 8 GiB). */
  base256?: boolean;
  linkname?: string;
  body?: Buffer;
}

function octal(buf: Buffer, off: number, len: number, n: number): void {
  buf.write(`${n.toString(8).padStart(len - 1, '0')}\0`, off, len, 'latin1');
}

/** A 512-byte header with a valid checksum. */
export function header(e: RawEntry): Buffer {
  const h = Buffer.alloc(512);
  h.write(e.name, 0, 100, 'utf8');
  octal(h, 100, 8, e.type === '5' ? 0o755 : 0o644);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  const size = e.size ?? e.body?.length ?? 0;
  if (e.base256) {
    h[124] = 0x80;
    let v = BigInt(size);
    for (let i = 135; i > 124; i--) {
      h[i] = Number(v & 0xffn);
      v >>= 8n;
    }
  } else octal(h, 124, 12, size);
  octal(h, 136, 12, 1_600_000_000);
  h.write(e.type ?? '0', 156, 1, 'latin1');
  if (e.linkname !== undefined) h.write(e.linkname, 157, 100, 'utf8');
  h.write('ustar\x0000', 257, 8, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return h;
}

/** Header, body and padding of each entry, then (unless `noEnd`) the two zero blocks. */
export function rawTar(entries: readonly RawEntry[], opts: { noEnd?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(header(e));
    if (e.body && e.body.length > 0) {
      parts.push(e.body);
      const pad = (512 - (e.body.length % 512)) % 512;
      if (pad) parts.push(Buffer.alloc(pad));
    }
  }
  if (!opts.noEnd) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
