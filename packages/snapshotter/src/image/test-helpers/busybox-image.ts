// Builds a tiny busybox-static image into a content store (test-only).
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import type { ContentStore } from '../../content/content-store.js';
import type { Digest } from '../../content/digest.js';
import { writeImage } from '../image.js';
import { hostPlatform } from '../platform.js';
import { MediaTypes, type StoredImage } from '../types.js';

async function packTar(busybox: Buffer): Promise<Buffer> {
  const pack = tar.pack();
  const mtime = new Date(0);
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  const add = (h: tar.Headers, body?: Buffer) => new Promise<void>((res, rej) => {
    const cb = (err?: Error | null) => (err ? rej(err) : res());
    if (body === undefined) pack.entry(h, cb);
    else pack.entry(h, body, cb);
  });
  await add({ name: 'bin/', type: 'directory', mode: 0o755, mtime });
  await add({ name: 'bin/busybox', mode: 0o755, mtime, size: busybox.length }, busybox);
  for (const l of ['sh', 'echo', 'cat']) await add({ name: `bin/${l}`, type: 'symlink', linkname: 'busybox', mode: 0o777, mtime });
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A one-layer linux image with /bin/busybox and sh/echo/cat symlinks; gzip or uncompressed layer. */
export async function buildBusyboxImage(store: ContentStore, opts: { gzip?: boolean } = {}): Promise<StoredImage> {
  const layerTar = await packTar(await readFile('/bin/busybox'));
  const diffId: Digest = `sha256:${createHash('sha256').update(layerTar).digest('hex')}`;
  const blob = opts.gzip === false ? layerTar : gzipSync(layerTar);
  const info = await store.writeBlob(blob);
  return writeImage(store, {
    config: {
      created: '2024-01-01T00:00:00Z',
      architecture: hostPlatform().architecture,
      os: 'linux',
      config: { Env: ['PATH=/bin'], Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: [] },
      history: [{ created: '2024-01-01T00:00:00Z', created_by: 'tsbuild test: busybox-static rootfs' }],
    },
    layers: [{ mediaType: opts.gzip === false ? MediaTypes.ociLayer : MediaTypes.ociLayerGzip, digest: info.digest, size: info.size, diffId }],
  });
}
