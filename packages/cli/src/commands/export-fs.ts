import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import type { StoredImage } from '@tsbuild/snapshotter';
import type { BuildStore } from '@tsbuild/solver';

/**
 * `--output type=local,dest=DIR` writes the image's flattened filesystem into DIR;
 * `type=tar,dest=FILE` writes it as one tar file.
 */
export async function exportFilesystem(store: BuildStore, image: StoredImage, type: 'local' | 'tar', dest: string): Promise<void> {
  const { applyLayer, openLayerStream } = await import('@tsbuild/snapshotter');
  const dir = type === 'local' ? dest : await store.tempDir('export');
  await mkdir(dir, { recursive: true });
  try {
    for (const l of image.manifest.layers) {
      await applyLayer(openLayerStream(store.content, l), dir);
    }
    if (type === 'tar') {
      await new Promise<void>((resolve, reject) => {
        const p = spawn('tar', ['--numeric-owner', '--sort=name', '-C', dir, '-cf', dest, '.'], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        p.stderr.on('data', (d: Buffer) => (err += d.toString()));
        p.on('error', reject);
        p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar exited with ${code}: ${err.trim()}`))));
      });
    }
  } finally {
    if (type === 'tar') await rm(dir, { recursive: true, force: true });
  }
}
