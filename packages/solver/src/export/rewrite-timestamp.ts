import { Readable, Transform, type TransformCallback } from 'node:stream';
import { openLayerStream, writeImage, writeLayer, type Compression, type LayerRef, type StoredImage } from '@tsbuild/snapshotter';
import { BuildError } from '../errors.js';
import type { BuildStore } from '../store.js';

const BLOCK = 512;

function readNumber(field: Buffer): number {
  if (field[0] & 0x80) {
    // GNU base-256
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i];
    return n;
  }
  const s = field.toString('latin1').replace(/\0.*$/s, '').trim();
  return s === '' ? 0 : parseInt(s, 8);
}

function checksum(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  return sum;
}

/**
 * Clamps the mtimes in a tar stream to `epoch`, in place: the ustar header field (and
 * its checksum) and `mtime` PAX records (rewritten with the same length, so no
 * offsets move). Everything else passes through byte for byte. `changed` counts the
 * entries it rewrote.
 */
export class ClampMtimes extends Transform {
  changed = 0;
  private buf: Buffer = Buffer.alloc(0);
  /** bytes of entry data (with padding) to pass through before the next header */
  private skip = 0;
  /** an extended header's data being collected */
  private pax: { need: number; chunks: Buffer[]; have: number } | undefined;
  private paxSize: number | undefined;
  private ended = false;
  private readonly epoch: number;

  constructor(epoch: number) {
    super();
    this.epoch = epoch;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    try {
      this.drain();
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (this.buf.length > 0) this.push(this.buf);
    cb();
  }

  private drain(): void {
    for (;;) {
      if (this.ended) {
        if (this.buf.length > 0) this.push(this.buf);
        this.buf = Buffer.alloc(0);
        return;
      }
      if (this.skip > 0) {
        if (this.buf.length === 0) return;
        const n = Math.min(this.skip, this.buf.length);
        this.push(this.buf.subarray(0, n));
        this.buf = this.buf.subarray(n);
        this.skip -= n;
        continue;
      }
      if (this.pax) {
        const n = Math.min(this.pax.need - this.pax.have, this.buf.length);
        if (n === 0 && this.pax.need > this.pax.have) return;
        this.pax.chunks.push(this.buf.subarray(0, n));
        this.pax.have += n;
        this.buf = this.buf.subarray(n);
        if (this.pax.have < this.pax.need) return;
        const data = Buffer.concat(this.pax.chunks);
        this.pax = undefined;
        this.push(this.patchPax(data));
        continue;
      }
      if (this.buf.length < BLOCK) return;
      const h = Buffer.from(this.buf.subarray(0, BLOCK));
      this.buf = this.buf.subarray(BLOCK);
      if (h.every((b) => b === 0)) {
        this.push(h);
        this.ended = true;
        continue;
      }
      if (checksum(h) !== readNumber(h.subarray(148, 156))) throw new BuildError('rewrite-timestamp: the layer is not a valid tar (header checksum mismatch)', 'INVALID_ARGUMENT');
      const flag = String.fromCharCode(h[156]);
      let size = readNumber(h.subarray(124, 136));
      if (flag !== 'x' && flag !== 'g' && this.paxSize !== undefined) size = this.paxSize;
      if (flag !== 'x' && flag !== 'g') this.paxSize = undefined;
      const mtime = readNumber(h.subarray(136, 148));
      if (mtime > this.epoch) {
        h.fill(0, 136, 148);
        h.write(`${this.epoch.toString(8).padStart(11, '0')}\0`, 136, 'latin1');
        const sum = checksum(h);
        h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
        if (flag !== 'x' && flag !== 'g' && flag !== 'L' && flag !== 'K') this.changed++;
      }
      this.push(h);
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      const hasData = flag === '0' || flag === '\0' || flag === '7' || flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K';
      if (!hasData) continue;
      if (flag === 'x') this.pax = { need: padded, chunks: [], have: 0 };
      else this.skip = padded;
    }
  }

  /** Rewrites `mtime` records above the epoch with a same-length value; notes a `size` record. */
  private patchPax(data: Buffer): Buffer {
    const out = Buffer.from(data);
    let off = 0;
    while (off < out.length) {
      const sp = out.indexOf(0x20, off);
      if (sp < 0) break;
      const len = Number(out.subarray(off, sp).toString('latin1'));
      if (!Number.isInteger(len) || len <= 0 || off + len > out.length) break;
      const rec = out.subarray(sp + 1, off + len - 1).toString('utf8');
      const eq = rec.indexOf('=');
      const key = rec.slice(0, eq);
      const value = rec.slice(eq + 1);
      if (key === 'size') this.paxSize = Number(value);
      if (key === 'mtime' && Number(value) > this.epoch) {
        const [int, frac] = value.split('.');
        const next = `${String(this.epoch).padStart(int.length, '0')}${frac !== undefined ? `.${'0'.repeat(frac.length)}` : ''}`;
        if (next.length === value.length) {
          out.write(next, sp + 1 + eq + 1, 'latin1');
          this.changed++;
        }
      }
      off += len;
    }
    return out;
  }
}

function compressionOf(mediaType: string): Compression {
  if (mediaType.endsWith('+zstd')) return 'zstd';
  if (mediaType.endsWith('+gzip') || mediaType.endsWith('.tar.gzip')) return 'gzip';
  return 'uncompressed';
}

async function countNewer(store: BuildStore, layer: LayerRef, epoch: number): Promise<number> {
  const t = new ClampMtimes(epoch);
  const src = openLayerStream(store.content, layer);
  src.on('error', (e) => t.destroy(e));
  src.pipe(t);
  for await (const _ of t) void _;
  return t.changed;
}

/**
 * `--output rewrite-timestamp=true`: clamps every file mtime in the image's layers
 * to `epoch` (SOURCE_DATE_EPOCH), as BuildKit does at export, so the result does
 * not depend on whether a step ran or came from the cache. Layers with nothing
 * newer than the epoch are kept as they are; the others are rewritten (same
 * compression) and the image is written anew with the new diffIDs. Returns the
 * image (the same one when nothing changed) and how many layers were rewritten.
 */
export async function rewriteTimestamps(store: BuildStore, image: StoredImage, epoch: number, opts: { signal?: AbortSignal } = {}): Promise<{ image: StoredImage; rewritten: number }> {
  if (!Number.isInteger(epoch) || epoch < 0) throw new BuildError(`rewrite-timestamp needs SOURCE_DATE_EPOCH as whole seconds since the epoch, found ${epoch}`, 'INVALID_ARGUMENT');
  const layers: LayerRef[] = [];
  let rewritten = 0;
  for (const [i, l] of image.manifest.layers.entries()) {
    const ref: LayerRef = { mediaType: l.mediaType, digest: l.digest, size: l.size, diffId: image.config.rootfs.diff_ids[i] };
    if ((await countNewer(store, ref, epoch)) === 0) {
      layers.push(ref);
      continue;
    }
    const t = new ClampMtimes(epoch);
    const src = openLayerStream(store.content, ref);
    src.on('error', (e) => t.destroy(e));
    const desc = await writeLayer(Readable.from(src.pipe(t)), store.content, { compression: compressionOf(l.mediaType), ...(opts.signal ? { signal: opts.signal } : {}) });
    layers.push({ mediaType: desc.mediaType, digest: desc.digest, size: desc.size, diffId: desc.diffId });
    rewritten++;
  }
  if (rewritten === 0) return { image, rewritten };
  const config = structuredClone(image.config);
  config.rootfs = { type: 'layers', diff_ids: layers.map((l) => l.diffId) };
  return { image: await writeImage(store.content, { config, layers }), rewritten };
}
