import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { openLayerStream, readTar, type Digest, type ReadEntry, type StoredImage, type TarEntryType } from '@tsbuild/snapshotter';
import { InspectTargetNotFoundError } from '../errors.js';
import type { BuildStore } from '../store.js';

/** How a path changed. */
export type ChangeKind = 'added' | 'changed' | 'removed';

/** One file a layer adds, changes or removes. */
export interface FileChange {
  path: string;
  kind: ChangeKind;
  type: TarEntryType;
  /** bytes of the file in this layer (for `removed`: of the version removed) */
  size: number;
}

/** One layer of an image, dive-style. */
export interface LayerReport {
  index: number;
  digest: Digest;
  diffId: Digest;
  /** bytes of the (compressed) blob */
  size: number;
  /** bytes of regular-file content in the layer */
  contentSize: number;
  /** the instruction that made it (from the image history) */
  instruction: string;
  created?: string;
  added: number;
  changed: number;
  removed: number;
  /** every change, when asked for */
  files?: FileChange[];
}

/** A path whose bytes are stored in some layer but hidden by a later one. */
export interface WastedFile {
  path: string;
  /** bytes stored in layers and not visible in the final image */
  size: number;
  /** how many hidden versions */
  count: number;
  /** indexes of the layers holding them */
  layers: number[];
}

/** What `tsbuild layers` shows. */
export interface ImageLayersReport {
  name: string;
  digest: Digest;
  layers: LayerReport[];
  /** bytes of file content over every layer */
  totalContent: number;
  /** bytes of file versions overwritten or deleted by a later layer */
  wasted: number;
  /** 1 − wasted / totalContent (1 when there is no content) */
  efficiency: number;
  /** the wasted paths, largest first */
  wastedFiles: WastedFile[];
}

interface PathState {
  type: TarEntryType;
  size: number;
  layer: number;
  mode: number;
  uid: number;
  gid: number;
  linkname?: string;
  digest?: string;
}

/** Turns a tar name into a clean relative path ('' for the root). */
function clean(p: string): string {
  const n = posix.normalize(`/${p}`).slice(1);
  return n === '.' ? '' : n.replace(/\/+$/, '');
}

function under(path: string, dir: string): boolean {
  return dir === '' ? path !== '' : path.startsWith(`${dir}/`);
}

async function hashBody(e: ReadEntry): Promise<string> {
  const h = createHash('sha256');
  for await (const c of e.body) h.update(c);
  return h.digest('hex');
}

interface LayerEvent {
  kind: 'entry' | 'whiteout' | 'opaque';
  path: string;
  entry?: ReadEntry;
}

/** Reads a layer blob and yields its entries, whiteouts and opaque markers. */
async function* layerEvents(store: BuildStore, layer: { digest: Digest; mediaType: string }): AsyncGenerator<LayerEvent> {
  for await (const e of readTar(openLayerStream(store.content, layer))) {
    const path = clean(e.path);
    const base = posix.basename(path);
    const dir = posix.dirname(path) === '.' ? '' : posix.dirname(path);
    if (base === '.wh..wh..opq') yield { kind: 'opaque', path: dir };
    else if (base.startsWith('.wh.')) yield { kind: 'whiteout', path: dir === '' ? base.slice(4) : `${dir}/${base.slice(4)}` };
    else if (path !== '') yield { kind: 'entry', path, entry: e };
  }
}

/**
 * Applies layers in order to an in-memory file table, calling `onChange` for each
 * file-level change (directories are tracked but not reported unless removed).
 */
async function replay(
  store: BuildStore,
  layers: readonly { digest: Digest; mediaType: string }[],
  opts: { hash: boolean; onChange?: (layer: number, c: FileChange, hidden?: PathState) => void; onEntry?: (layer: number, e: ReadEntry) => void },
): Promise<Map<string, PathState>> {
  const fs = new Map<string, PathState>();
  const removeTree = (layer: number, root: string, includeRoot: boolean): void => {
    for (const [p, s] of fs) {
      if (s.layer >= layer) continue; // only lower layers are hidden by a whiteout
      if ((includeRoot && p === root) || under(p, root)) {
        fs.delete(p);
        opts.onChange?.(layer, { path: p, kind: 'removed', type: s.type, size: s.size }, s);
      }
    }
  };
  for (const [i, l] of layers.entries()) {
    for await (const ev of layerEvents(store, l)) {
      if (ev.kind === 'opaque') {
        removeTree(i, ev.path, false);
        continue;
      }
      if (ev.kind === 'whiteout') {
        removeTree(i, ev.path, true);
        continue;
      }
      const e = ev.entry!;
      opts.onEntry?.(i, e);
      const old = fs.get(ev.path);
      if (old && old.type === 'directory' && e.type !== 'directory') removeTree(i, ev.path, false);
      const st: PathState = { type: e.type, size: e.size, layer: i, mode: e.mode, uid: e.uid, gid: e.gid };
      if (e.linkname !== undefined) st.linkname = e.linkname;
      if (opts.hash && e.type === 'file') st.digest = await hashBody(e);
      fs.set(ev.path, st);
      if (e.type !== 'directory') opts.onChange?.(i, { path: ev.path, kind: old && old.type !== 'directory' ? 'changed' : 'added', type: e.type, size: e.size }, old && old.type !== 'directory' ? old : undefined);
    }
  }
  return fs;
}

async function resolveImage(store: BuildStore, name: string): Promise<StoredImage> {
  const image = await store.images.resolve(name);
  if (!image) throw new InspectTargetNotFoundError(name, 'the name of an image in the local store');
  return image;
}

/**
 * Per layer: the instruction, size, files added/changed/removed; over the image: the
 * bytes stored in layers but hidden in the final filesystem (overwritten or deleted
 * by a later layer) and the efficiency score, as dive reports them.
 */
export async function analyzeLayers(store: BuildStore, name: string, opts: { files?: boolean } = {}): Promise<ImageLayersReport> {
  const image = await resolveImage(store, name);
  const history = (image.config.history ?? []).filter((h) => !h.empty_layer);
  const layers: LayerReport[] = image.manifest.layers.map((l, i) => {
    const h = history[i];
    const r: LayerReport = {
      index: i,
      digest: l.digest,
      diffId: image.config.rootfs.diff_ids[i],
      size: l.size,
      contentSize: 0,
      instruction: (h?.created_by ?? '').replace(/\s*# buildkit$/, ''),
      added: 0,
      changed: 0,
      removed: 0,
    };
    if (h?.created !== undefined) r.created = h.created;
    if (opts.files) r.files = [];
    return r;
  });
  const wasted = new Map<string, WastedFile>();
  let totalContent = 0;
  await replay(store, image.manifest.layers, {
    hash: false,
    onEntry: (i, e) => {
      if (e.type === 'file') {
        layers[i].contentSize += e.size;
        totalContent += e.size;
      }
    },
    onChange: (i, c, hidden) => {
      const r = layers[i];
      r[c.kind]++;
      r.files?.push(c);
      if (hidden && hidden.type === 'file') {
        const w = wasted.get(c.path) ?? { path: c.path, size: 0, count: 0, layers: [] };
        w.size += hidden.size;
        w.count++;
        w.layers.push(hidden.layer);
        wasted.set(c.path, w);
      }
    },
  });
  const wastedFiles = [...wasted.values()].filter((w) => w.size > 0 || w.count > 0).sort((a, b) => b.size - a.size || (a.path < b.path ? -1 : 1));
  const wastedBytes = wastedFiles.reduce((s, w) => s + w.size, 0);
  return {
    name,
    digest: image.manifestDigest,
    layers,
    totalContent,
    wasted: wastedBytes,
    efficiency: totalContent === 0 ? 1 : (totalContent - wastedBytes) / totalContent,
    wastedFiles,
  };
}

/** One difference between two filesystems (or two layers). */
export interface DiffEntry {
  path: string;
  kind: ChangeKind;
  type: TarEntryType;
  /** size in A (absent when added) */
  sizeA?: number;
  /** size in B (absent when removed) */
  sizeB?: number;
  /** what differs for `changed`: content, size, mode, owner, type, link */
  what?: string[];
}

export interface DiffReport {
  a: string;
  b: string;
  /** 'image': final filesystems compared; 'layer': the two layers' own entries */
  mode: 'image' | 'layer';
  changes: DiffEntry[];
  added: number;
  changed: number;
  removed: number;
}

function compare(a: Map<string, PathState>, b: Map<string, PathState>): DiffEntry[] {
  const out: DiffEntry[] = [];
  for (const [p, sb] of b) {
    const sa = a.get(p);
    if (!sa) {
      out.push({ path: p, kind: 'added', type: sb.type, sizeB: sb.size });
      continue;
    }
    const what: string[] = [];
    if (sa.type !== sb.type) what.push('type');
    if (sa.size !== sb.size) what.push('size');
    if (sa.digest !== sb.digest && sa.type === 'file' && sb.type === 'file') what.push('content');
    if (sa.mode !== sb.mode) what.push('mode');
    if (sa.uid !== sb.uid || sa.gid !== sb.gid) what.push('owner');
    if (sa.linkname !== sb.linkname) what.push('link');
    if (what.length > 0) out.push({ path: p, kind: 'changed', type: sb.type, sizeA: sa.size, sizeB: sb.size, what });
  }
  for (const [p, sa] of a) if (!b.has(p)) out.push({ path: p, kind: 'removed', type: sa.type, sizeA: sa.size });
  return out.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}

/** A layer blob named by digest (or a unique prefix of at least 12 hex digits) that some image or cache record uses. */
async function findLayer(store: BuildStore, ref: string): Promise<{ digest: Digest; mediaType: string } | undefined> {
  const hex = ref.replace(/^sha256:/, '').toLowerCase();
  if (!/^[0-9a-f]{12,64}$/.test(hex)) return undefined;
  const found = new Map<string, { digest: Digest; mediaType: string }>();
  for (const e of await store.images.list()) {
    const img = await store.images.resolve(e.name);
    for (const l of img?.manifest.layers ?? []) if (l.digest.slice(7).startsWith(hex)) found.set(l.digest, l);
  }
  for (const r of store.db.all()) if (r.layer && r.layer.digest.slice(7).startsWith(hex)) found.set(r.layer.digest, r.layer);
  if (found.size > 1) throw new InspectTargetNotFoundError(ref, `a prefix matching one layer, found ${found.size}`);
  const l = [...found.values()][0];
  return l && (await store.content.has(l.digest)) ? l : undefined;
}

/**
 * Compares two images (their final filesystems: added, removed and changed files,
 * with content compared by sha256) or two layers (the entries each holds; a whiteout
 * shows as removed).
 */
export async function diffImages(store: BuildStore, a: string, b: string): Promise<DiffReport> {
  const [ia, ib] = await Promise.all([store.images.resolve(a), store.images.resolve(b)]);
  let changes: DiffEntry[];
  let mode: 'image' | 'layer';
  if (ia && ib) {
    mode = 'image';
    const [fa, fb] = await Promise.all([replay(store, ia.manifest.layers, { hash: true }), replay(store, ib.manifest.layers, { hash: true })]);
    changes = compare(fa, fb);
  } else {
    const [la, lb] = await Promise.all([ia ? undefined : findLayer(store, a), ib ? undefined : findLayer(store, b)]);
    if (!la || !lb) {
      const missing = !(ia || la) ? a : b;
      throw new InspectTargetNotFoundError(missing, ia || ib ? 'an image name (both sides must be images, or both layers)' : 'an image name or the digest of a layer in the store (12+ hex digits)');
    }
    mode = 'layer';
    const entries = async (l: { digest: Digest; mediaType: string }): Promise<Map<string, PathState>> => {
      const m = new Map<string, PathState>();
      for await (const ev of layerEvents(store, l)) {
        if (ev.kind === 'entry') {
          const e = ev.entry!;
          const s: PathState = { type: e.type, size: e.size, layer: 0, mode: e.mode, uid: e.uid, gid: e.gid };
          if (e.linkname !== undefined) s.linkname = e.linkname;
          if (e.type === 'file') s.digest = await hashBody(e);
          m.set(ev.path, s);
        } else {
          m.set(`${ev.path}${ev.kind === 'opaque' ? '/' : ''} (whiteout)`, { type: 'file', size: 0, layer: 0, mode: 0, uid: 0, gid: 0 });
        }
      }
      return m;
    };
    changes = compare(await entries(la), await entries(lb));
  }
  return {
    a,
    b,
    mode,
    changes,
    added: changes.filter((c) => c.kind === 'added').length,
    changed: changes.filter((c) => c.kind === 'changed').length,
    removed: changes.filter((c) => c.kind === 'removed').length,
  };
}
