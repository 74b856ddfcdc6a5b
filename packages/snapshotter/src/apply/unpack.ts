/** Unpacking image layers into committed snapshots named by chainID. */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { ContentStore, Digest } from '../content/index.js';
import { DigestMismatchError, SnapshotExistsError, SnapshotNotFoundError, SnapshotStateError } from '../errors.js';
import { openLayerStream } from '../layer/index.js';
import { withMount } from '../snapshots/mount.js';
import { snapshotLayout } from '../snapshots/snapshotter.js';
import type { Snapshotter } from '../snapshots/types.js';
import { applyLayer, type ApplyOptions, type LayerLimits } from './apply-layer.js';
import { crashPoint } from '../crash-point.js';

/** containerd's chainID: chainID(L0) = diffID(L0); chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln)). */
export function chainId(diffIds: readonly Digest[]): Digest | undefined {
  let chain: Digest | undefined;
  for (const d of diffIds) chain = chain === undefined ? d : `sha256:${createHash('sha256').update(`${chain} ${d}`).digest('hex')}`;
  return chain;
}

async function exists(s: Snapshotter, key: string): Promise<boolean> {
  try {
    const i = await s.stat(key);
    if (i.kind !== 'committed') throw new SnapshotStateError(key, 'a committed snapshot', `a ${i.kind} snapshot`);
    return true;
  } catch (e) {
    if (e instanceof SnapshotNotFoundError) return false;
    throw e;
  }
}

/**
 * Applies each layer as a committed snapshot named by its chainID, reusing those that
 * already exist, and returns the top chainID. Transactional per layer: each layer is
 * applied into a fresh active snapshot (on the merged overlay mount, or the copy tree)
 * and committed only after the whole tar applied and its sha256 matched the diffID;
 * on any error that active snapshot is removed, so existing snapshots never change.
 * Each layer is capped by `opts.limits` (applyLayer's defaults otherwise), its `size`
 * (the compressed blob's) bounding how far it may expand. `opts.labels` go on every
 * snapshot this call commits (the applied files are not fsynced: the caller may label
 * them with the boot they were written in, and drop them after a crash of the machine).
 */
export async function unpackImage(
  store: ContentStore,
  snapshotter: Snapshotter,
  layers: readonly { digest: Digest; diffId: Digest; mediaType: string; size?: number }[],
  opts: { signal?: AbortSignal; limits?: LayerLimits; labels?: Record<string, string> } = {},
): Promise<string> {
  if (layers.length === 0) throw new SnapshotStateError('', 'at least one layer', 'none');
  let parent: string | undefined;
  for (const layer of layers) {
    const id: string = parent === undefined ? layer.diffId : `sha256:${createHash('sha256').update(`${parent} ${layer.diffId}`).digest('hex')}`;
    if (!(await exists(snapshotter, id))) {
      const key = `extract-${randomBytes(8).toString('hex')} ${id}`;
      const mounts = await snapshotter.prepare(key, parent);
      try {
        const apply = async (dir: string): Promise<Digest | undefined> => {
          const aopts: ApplyOptions = { diffId: true };
          if (opts.signal) aopts.signal = opts.signal;
          if (opts.limits) aopts.limits = opts.limits;
          if (layer.size !== undefined) aopts.compressedSize = layer.size;
          // the applier hashes the whole tar (to its end, trailing padding included)
          return (await applyLayer(openLayerStream(store, layer), dir, aopts)).diffId;
        };
        const actual =
          snapshotter.backend === 'overlay' ? await withMount(mounts, apply, { parent: join(snapshotter.root, 'mnt') }) : await apply((await snapshotLayout(snapshotter, key)).dir);
        crashPoint('unpack-layer');
        if (actual === undefined) throw new Error('applyLayer gave no diffId');
        if (actual !== layer.diffId) throw new DigestMismatchError(layer.diffId, actual);
        try {
          await snapshotter.commit(id, key, opts.labels !== undefined ? { labels: opts.labels } : undefined);
        } catch (e) {
          // Another process unpacked the same chain meanwhile: use theirs.
          if (!(e instanceof SnapshotExistsError)) throw e;
          await snapshotter.remove(key);
        }
      } catch (e) {
        await snapshotter.remove(key).catch(() => undefined);
        throw e;
      }
    }
    parent = id;
  }
  return parent!;
}
