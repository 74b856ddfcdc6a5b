/** Turning lstat results into deterministic tar entries. */
import type { NodeStat } from './walk.js';
import { readlinkSync } from 'node:fs';
import { utf8Name } from '../util/file-names.js';
import type { Xattrs } from './system.js';
import type { TarEntry } from './types.js';
import { splitDev } from './walk.js';

/** Options shared by every tree → tar conversion. */
export interface EntryOptions {
  /** Clamp mtimes to min(mtime, sourceDateEpoch) (seconds). */
  sourceDateEpoch?: number;
}

/** Overlay's private xattrs: never written to a layer. */
export function isOverlayPrivateXattr(name: string): boolean {
  return name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.');
}

/** Drops overlay-private xattrs; returns undefined when nothing is left. */
export function publicXattrs(x: Xattrs | undefined): Xattrs | undefined {
  if (!x) return undefined;
  const out: Xattrs = new Map();
  for (const [k, v] of x) if (!isOverlayPrivateXattr(k)) out.set(k, v);
  return out.size ? out : undefined;
}

export function entryMtime(st: NodeStat, opts: EntryOptions): number {
  const sec = Number(st.mtimeNs / 1_000_000_000n);
  const s = Math.max(0, sec);
  return opts.sourceDateEpoch === undefined ? s : Math.min(s, opts.sourceDateEpoch);
}

/**
 * The tar entry for one filesystem object (not yet hardlink-resolved). Returns
 * undefined for sockets, which tar cannot represent.
 */
export function fsEntry(rel: string, abs: string, st: NodeStat, xattrs: Xattrs | undefined, opts: EntryOptions): TarEntry | undefined {
  // object literals of one shape per type, no spread: this runs once per file of a layer
  const mode = Number(st.mode & 0o7777n);
  const uid = Number(st.uid);
  const gid = Number(st.gid);
  const mtime = entryMtime(st, opts);
  let e: TarEntry;
  if (st.isFile()) e = { path: rel, type: 'file', mode, uid, gid, size: Number(st.size), mtime, source: abs };
  else if (st.isDirectory()) e = { path: rel, type: 'directory', mode, uid, gid, size: 0, mtime };
  else if (st.isSymbolicLink()) e = { path: rel, type: 'symlink', mode, uid, gid, size: 0, mtime, linkname: linkTarget(abs, rel) };
  else if (st.isFIFO()) e = { path: rel, type: 'fifo', mode, uid, gid, size: 0, mtime };
  else if (st.isCharacterDevice() || st.isBlockDevice()) {
    const { major, minor } = splitDev(st.rdev);
    e = { path: rel, type: st.isCharacterDevice() ? 'character-device' : 'block-device', mode, uid, gid, size: 0, mtime, devmajor: major, devminor: minor };
  } else return undefined;
  const xa = publicXattrs(xattrs);
  if (xa) e.xattrs = xa;
  return e;
}

/** A symlink's target; one that is not UTF-8 is refused (UnsupportedFileNameError), not changed. */
function linkTarget(abs: string, rel: string): string {
  const t = readlinkSync(abs, 'utf8');
  return t.includes('\uFFFD') ? utf8Name(readlinkSync(abs, 'buffer'), 'tree walk', rel) : t;
}

/** Whiteout / opaque marker entry: empty regular file, mode 0, owner 0, mtime 0. */
export function markerEntry(path: string): TarEntry {
  return { path, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime: 0 };
}

/**
 * Emits the second and later paths of one inode as hardlinks to the first (callers feed
 * entries in output order, so the result is deterministic).
 */
export class HardlinkTracker {
  /** first path per inode, by device then inode number (bigint keys: no string per file) */
  private readonly seen = new Map<bigint, Map<bigint, string>>();
  resolve(e: TarEntry, st: NodeStat): TarEntry {
    if (e.type === 'directory' || st.nlink < 2n) return e;
    let byIno = this.seen.get(st.dev);
    if (byIno === undefined) this.seen.set(st.dev, (byIno = new Map()));
    const first = byIno.get(st.ino);
    if (first === undefined) {
      byIno.set(st.ino, e.path);
      return e;
    }
    const { source: _source, ...rest } = e;
    return { ...rest, type: 'link', size: 0, linkname: first };
  }
}
