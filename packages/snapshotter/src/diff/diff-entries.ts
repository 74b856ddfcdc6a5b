/**
 * Computing the tar entries of a snapshot's diff against its parent.
 *  - overlay: a walk of the upperdir only (cost ∝ what changed), converting overlay
 *    whiteouts (char 0/0) to `.wh.<name>` and opaque dirs to `<dir>/.wh..wh..opq`;
 *  - copy: a two-tree compare against the parent's full tree (metadata only).
 */
import type { NodeStat } from '../tar/walk.js';
import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { EntryOptions } from '../tar/from-fs.js';
import { fsEntry, HardlinkTracker, markerEntry, publicXattrs } from '../tar/from-fs.js';
import type { Xattrs } from '../tar/system.js';
import { readTreeXattrs } from '../tar/system.js';
import type { TarEntry } from '../tar/types.js';
import { scanTree, sortByPath } from '../tar/walk.js';
import type { SnapshotLayout } from '../snapshots/snapshotter.js';

/** Mount-point stubs a runtime creates in the rootfs; dropped from diffs when empty and new. */
export const DEFAULT_MOUNT_STUBS: readonly string[] = ['/proc', '/sys', '/dev', '/dev/shm', '/dev/pts', '/etc/hosts', '/etc/resolv.conf', '/etc/hostname'];

export interface DiffOptions extends EntryOptions {
  mountStubs?: readonly string[];
  signal?: AbortSignal;
  /** When given, filled with the inode number of every regular-file entry (by tar path). */
  inodes?: Map<string, bigint>;
}

interface Pending {
  entry: TarEntry;
  stat?: NodeStat;
}

function finish(list: Pending[], inodes: Map<string, bigint> | undefined): TarEntry[] {
  sortByPath(list, (p) => p.entry.path);
  const links = new HardlinkTracker();
  return list.map((p) => {
    if (!p.stat) return p.entry;
    const e = links.resolve(p.entry, p.stat);
    if (inodes !== undefined && e.type === 'file') inodes.set(e.path, p.stat.ino);
    return e;
  });
}

function pending(entry: TarEntry, stat?: NodeStat): Pending {
  const p: Pending = { entry };
  if (stat) p.stat = stat;
  return p;
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

function join2(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

function isOverlayWhiteout(st: NodeStat): boolean {
  return st.isCharacterDevice() && st.rdev === 0n;
}

function isOpaque(x: Xattrs | undefined): boolean {
  const v = x?.get('trusted.overlay.opaque') ?? x?.get('user.overlay.opaque');
  return v !== undefined && v.toString('latin1') === 'y';
}

async function lstatOrUndefined(p: string): Promise<NodeStat | undefined> {
  try {
    return await lstat(p, { bigint: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
}

/** What the parent view has at `rel` (first lower that has it; stops at overlay whiteouts). */
async function lowerLookup(lowers: readonly string[], rel: string): Promise<NodeStat | undefined> {
  for (const l of lowers) {
    const st = await lstatOrUndefined(join(l, rel));
    if (st) return isOverlayWhiteout(st) ? undefined : st;
  }
  return undefined;
}

function sameKind(a: NodeStat, b: NodeStat): boolean {
  return (a.mode & 0o170000n) === (b.mode & 0o170000n);
}

function childrenOf(nodes: ReadonlyMap<string, NodeStat>): Map<string, string[]> {
  const children = new Map<string, string[]>();
  for (const p of nodes.keys()) {
    const parent = parentOf(p);
    const list = children.get(parent);
    if (list) list.push(p);
    else children.set(parent, [p]);
  }
  return children;
}

/**
 * Mount-point stubs to leave out: empty in the snapshot, and the parent has nothing
 * different there; plus directories that only changed because such a stub was created
 * in them (copy-up of /etc for /etc/hosts), when their metadata matches the parent's.
 */
async function droppedStubs(
  nodes: ReadonlyMap<string, NodeStat>,
  children: ReadonlyMap<string, string[]>,
  xattrs: ReadonlyMap<string, Xattrs>,
  opts: DiffOptions,
  lowerOf: (rel: string) => Promise<NodeStat | undefined>,
): Promise<Set<string>> {
  const dropped = new Set<string>();
  const stubs = (opts.mountStubs ?? DEFAULT_MOUNT_STUBS).map((raw) => raw.replace(/^\/+/, '').replace(/\/+$/, ''));
  // Deepest first, so /dev counts as empty once /dev/shm and /dev/pts are dropped.
  stubs.sort((a, b) => b.length - a.length);
  for (const stub of stubs) {
    const st = nodes.get(stub);
    if (!st || stub === '') continue;
    const empty = st.isDirectory() ? (children.get(stub) ?? []).every((c) => dropped.has(c)) : st.isFile() && st.size === 0n;
    if (!empty || isOpaque(xattrs.get(stub))) continue;
    const lower = await lowerOf(stub);
    if (!lower || (sameKind(lower, st) && (lower.isDirectory() || lower.size === 0n))) dropped.add(stub);
  }
  return dropped;
}

/** Drops directories whose only reason to be in the diff is a dropped stub inside them. */
async function dropStubParents(
  out: Pending[],
  dropped: ReadonlySet<string>,
  lowerOf: (rel: string) => Promise<NodeStat | undefined>,
): Promise<Pending[]> {
  if (dropped.size === 0) return out;
  const emitted = out.map((p) => p.entry.path);
  const remove = new Set<string>();
  const dirs = out.filter((p) => p.entry.type === 'directory' && p.stat).reverse();
  for (const d of dirs) {
    const rel = d.entry.path;
    const hasStubChild = [...dropped].some((x) => parentOf(x) === rel);
    if (!hasStubChild) continue;
    if (emitted.some((e) => e.startsWith(`${rel}/`) && !remove.has(e))) continue;
    const lower = await lowerOf(rel);
    const st = d.stat!;
    if (lower && lower.isDirectory() && lower.mode === st.mode && lower.uid === st.uid && lower.gid === st.gid) remove.add(rel);
  }
  return out.filter((p) => !remove.has(p.entry.path));
}

/** Entries of an overlay snapshot's diff: the upperdir only. */
export async function overlayDiffEntries(layout: SnapshotLayout, opts: DiffOptions): Promise<TarEntry[]> {
  const upper = layout.dir;
  const upperSlash = upper.endsWith('/') ? upper : `${upper}/`; // scanned paths are clean: no path.join per entry
  const [nodes, xattrs] = await Promise.all([scanTree(upper, { signal: opts.signal }), readTreeXattrs(upper)]);
  const children = new Map<string, string[]>();
  for (const p of nodes.keys()) {
    const parent = parentOf(p);
    const list = children.get(parent);
    if (list) list.push(p);
    else children.set(parent, [p]);
  }

  const dropped = await droppedStubs(nodes, children, xattrs, opts, (rel) => lowerLookup(layout.parentDirs, rel));

  const out: Pending[] = [];
  for (const [rel, st] of nodes) {
    if (dropped.has(rel)) continue;
    if (isOverlayWhiteout(st)) {
      out.push(pending(markerEntry(join2(parentOf(rel), `.wh.${baseName(rel)}`))));
      continue;
    }
    const x = xattrs.get(rel);
    const e = fsEntry(rel, `${upperSlash}${rel}`, st, x, opts);
    if (!e) continue;
    out.push(pending(e, st));
    if (st.isDirectory() && isOpaque(x)) out.push(pending(markerEntry(`${rel}/.wh..wh..opq`)));
  }
  return finish(await dropStubParents(out, dropped, (rel) => lowerLookup(layout.parentDirs, rel)), opts.inodes);
}

function xattrsEqual(a: Xattrs | undefined, b: Xattrs | undefined): boolean {
  const pa = publicXattrs(a);
  const pb = publicXattrs(b);
  if (!pa || !pb) return !pa && !pb;
  if (pa.size !== pb.size) return false;
  for (const [k, v] of pa) {
    const w = pb.get(k);
    if (!w || !w.equals(v)) return false;
  }
  return true;
}

/** Entries of a copy snapshot's diff: compare its tree with the parent's tree. */
export async function copyDiffEntries(layout: SnapshotLayout, opts: DiffOptions): Promise<TarEntry[]> {
  const cur = layout.dir;
  const old = layout.parentDirs[0];
  const [nodes, xattrs, oldNodes, oldXattrs] = await Promise.all([
    scanTree(cur, { signal: opts.signal }),
    readTreeXattrs(cur),
    old ? scanTree(old, { signal: opts.signal }) : Promise.resolve(new Map<string, NodeStat>()),
    old ? readTreeXattrs(old) : Promise.resolve(new Map<string, Xattrs>()),
  ]);
  const lowerOf = async (rel: string): Promise<NodeStat | undefined> => oldNodes.get(rel);
  const dropped = await droppedStubs(nodes, childrenOf(nodes), xattrs, opts, lowerOf);
  const out: Pending[] = [];
  for (const [rel, st] of nodes) {
    if (dropped.has(rel)) continue;
    const o = oldNodes.get(rel);
    let changed = !o || !sameKind(o, st) || o.mode !== st.mode || o.uid !== st.uid || o.gid !== st.gid || o.mtimeNs !== st.mtimeNs;
    if (!changed && o) {
      if (st.isFile()) changed = o.size !== st.size;
      else if (st.isSymbolicLink()) changed = (await readlink(join(cur, rel))) !== (await readlink(join(old!, rel)));
      else if (st.isCharacterDevice() || st.isBlockDevice()) changed = o.rdev !== st.rdev;
      if (!changed) changed = !xattrsEqual(xattrs.get(rel), oldXattrs.get(rel));
    }
    if (!changed) continue;
    const e = fsEntry(rel, join(cur, rel), st, xattrs.get(rel), opts);
    if (e) out.push(pending(e, st));
  }
  for (const [rel, o] of oldNodes) {
    if (nodes.has(rel)) continue;
    const parent = parentOf(rel);
    // Only the topmost deleted path gets a whiteout; a parent that stopped being a
    // directory replaces the whole subtree by itself.
    if (parent !== '') {
      const np = nodes.get(parent);
      const op = oldNodes.get(parent);
      if (!np || !np.isDirectory() || !op || !op.isDirectory()) continue;
    }
    void o;
    out.push(pending(markerEntry(join2(parent, `.wh.${baseName(rel)}`))));
  }
  return finish(await dropStubParents(out, dropped, lowerOf), opts.inodes);
}

/** Diff entries of a snapshot, whichever backend made it. */
export function diffEntries(layout: SnapshotLayout, opts: DiffOptions): Promise<TarEntry[]> {
  return layout.backend === 'overlay' ? overlayDiffEntries(layout, opts) : copyDiffEntries(layout, opts);
}
