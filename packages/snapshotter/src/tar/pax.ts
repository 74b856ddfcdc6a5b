/** PAX extended-header records (POSIX.1-2001), binary-safe (xattr values are raw bytes). */

/** Encodes records `"<len> <key>=<value>\n"` in the given order. */
export function encodePaxRecords(records: ReadonlyArray<readonly [string, string | Buffer]>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of records) {
    const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), typeof value === 'string' ? Buffer.from(value, 'utf8') : value, Buffer.from('\n')]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    parts.push(Buffer.from(String(len), 'ascii'), body);
  }
  return Buffer.concat(parts);
}

/** Decodes PAX records; values stay raw bytes. Returns undefined if malformed. */
export function decodePaxRecords(buf: Buffer): Map<string, Buffer> | undefined {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < buf.length) {
    if (buf[off] === 0) break; // padding
    const sp = buf.indexOf(0x20, off);
    if (sp < 0) return undefined;
    const len = Number.parseInt(buf.subarray(off, sp).toString('ascii'), 10);
    if (!Number.isSafeInteger(len) || len <= sp - off || off + len > buf.length) return undefined;
    const rec = buf.subarray(sp + 1, off + len - 1); // drop trailing \n
    if (buf[off + len - 1] !== 0x0a) return undefined;
    const eq = rec.indexOf(0x3d);
    if (eq < 0) return undefined;
    out.set(rec.subarray(0, eq).toString('utf8'), Buffer.from(rec.subarray(eq + 1)));
    off += len;
  }
  return out;
}
