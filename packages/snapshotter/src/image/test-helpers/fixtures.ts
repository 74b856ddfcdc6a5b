// Test-only helpers (excluded from the build by tsconfig).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ContentStore } from '../../content/content-store.js';
import { sha256 } from '../../content/digest.js';
import { MediaTypes, type ImageConfigFile, type LayerRef } from '../types.js';

export async function tempDir(prefix: string, cleanup: string[]): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  cleanup.push(d);
  return d;
}

export async function removeAll(dirs: string[]): Promise<void> {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
}

/** A tiny but valid tar holding one file. */
export function tinyTar(name: string, content: string): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 'utf8');
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${content.length.toString(8).padStart(11, '0')}\0`, 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const body = Buffer.alloc(Math.ceil(content.length / 512) * 512);
  body.write(content);
  return Buffer.concat([header, body, Buffer.alloc(1024)]);
}

export async function storeGzipLayer(store: ContentStore, tar: Buffer): Promise<LayerRef> {
  const gz = gzipSync(tar);
  const info = await store.writeBlob(gz);
  return { mediaType: MediaTypes.ociLayerGzip, digest: info.digest, size: info.size, diffId: sha256(tar) };
}

export function baseConfig(): ImageConfigFile {
  return {
    created: '2024-01-01T00:00:00Z',
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/bin'], Cmd: ['sh'], WorkingDir: '/', Labels: { b: '2', a: '1' } },
    rootfs: { type: 'layers', diff_ids: [] },
    history: [{ created: '2024-01-01T00:00:00Z', created_by: 'test' }],
  };
}
