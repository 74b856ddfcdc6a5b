import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { lstat, rm } from 'node:fs/promises';
import { exportLayer, mountAll, unmountAll, writeImage, type ImageRuntimeConfig, type StoredImage } from '@tsbuild/snapshotter';
import { BuildError } from '../errors.js';
import { emptyConfig } from '../frontend/image-config.js';
import type { BuildStore } from '../store.js';
import { currentBootId, ensureVolatileStamp, VOLATILE_LABEL } from '../frontend/volatile.js';

export interface ImportOptions {
  /** names to tag the image with */
  tags?: readonly string[];
  /** runtime config of the image (Env, Cmd, ...) */
  config?: ImageRuntimeConfig;
  /** clamp layer timestamps and `created` to this Unix time */
  sourceDateEpoch?: number;
}

/**
 * Makes a one-layer image from a root filesystem directory (like `docker import`),
 * through the same snapshot → diff → layer path as a build step.
 */
export async function importRootfs(store: BuildStore, dir: string, opts: ImportOptions = {}): Promise<StoredImage> {
  const st = await lstat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new BuildError(`${dir} is not a directory`, 'INVALID_ARGUMENT');
  const active = `import-${process.pid}-${randomBytes(6).toString('hex')}`;
  const mounts = await store.snapshots.prepare(active);
  let committed = false;
  try {
    const mnt = await store.tempDir('import');
    await mountAll(mounts, mnt);
    try {
      await run('cp', ['-a', '--', `${dir}/.`, `${mnt}/`]);
    } finally {
      await unmountAll(mnt);
      await rm(mnt, { recursive: true, force: true });
    }
    const desc = await exportLayer(store.snapshots, active, store.content, opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch, mountStubs: [] } : { mountStubs: [] });
    try {
      // the copied files are never fsynced: labelled with this boot, dropped after a machine crash (volatile.ts)
      const boot = await currentBootId();
      if (boot !== undefined) await ensureVolatileStamp(store.root, boot);
      await store.snapshots.commit(desc.diffId, active, boot !== undefined ? { labels: { [VOLATILE_LABEL]: boot } } : undefined);
      committed = true;
    } catch (err) {
      if ((err as { code?: string }).code !== 'ALREADY_EXISTS') throw err;
    }
    const config = emptyConfig();
    config.config = { ...(opts.config ?? {}) };
    config.created = new Date(opts.sourceDateEpoch !== undefined ? opts.sourceDateEpoch * 1000 : Date.now()).toISOString();
    config.rootfs = { type: 'layers', diff_ids: [desc.diffId] };
    config.history = [{ created: config.created, created_by: `tsbuild import ${dir.split('/').pop() ?? ''}`, comment: 'imported' }];
    const image = await writeImage(store.content, { config, layers: [{ mediaType: desc.mediaType, digest: desc.digest, size: desc.size, diffId: desc.diffId }] });
    for (const t of opts.tags ?? []) await store.images.tag(t, image);
    return image;
  } finally {
    if (!committed) await store.snapshots.remove(active).catch(() => {});
  }
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new BuildError(`${cmd} failed (exit ${code}): ${err.trim()}`, 'INTERNAL'))));
  });
}
