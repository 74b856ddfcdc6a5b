import { linkSync, lstatSync, mkdirSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { Owner } from './copy.js';

/** How far a copied file's mtime may sit from its source's and still count as the same. */
const MTIME_SLACK_MS = 0.002;

/** One regular file a COPY is about to write, and what the copy would give it. */
export interface RelinkCandidate {
  /** absolute path inside the container */
  containerPath: string;
  size: number;
  /** permission bits the copy sets (after --chmod) */
  mode: number;
  mtimeMs: number;
}

/**
 * Before a COPY runs, hardlinks into the new snapshot's (not yet mounted) upper directory
 * every file the previous run of the same COPY wrote with identical content and metadata,
 * from that run's committed snapshot (on the same parent layers, so the result is the
 * same). Committed snapshots are immutable and overlay never writes a lower layer in
 * place, so sharing inodes between them is safe. Only directories that are real
 * directories in the previous upper directory are created (the copy then sets their
 * metadata as usual). The caller must already have checked that each candidate's content
 * digest is the one the previous run recorded. Returns the container paths linked, each
 * with its inode number (the layer export reuses the previous layer's entries for them).
 */
export function relinkUnchanged(prevUpper: string, upper: string, owner: Owner, candidates: readonly RelinkCandidate[]): Map<string, bigint> {
  const linked = new Map<string, bigint>();
  // container paths are absolute and clean: plain concatenation (path.join per file showed in profiles)
  const from0 = prevUpper.replace(/\/+$/, '');
  const to0 = upper.replace(/\/+$/, '');
  const dirs = new Map<string, boolean>([['/', true]]);
  const ensureDir = (dir: string): boolean => {
    const known = dirs.get(dir);
    if (known !== undefined) return known;
    let ok = ensureDir(posix.dirname(dir));
    if (ok) {
      const st = lstatSync(join(prevUpper, dir), { throwIfNoEntry: false });
      ok = st !== undefined && st.isDirectory();
      if (ok) {
        const here = lstatSync(join(upper, dir), { throwIfNoEntry: false });
        if (!here) mkdirSync(join(upper, dir), { mode: 0o755 });
        else ok = here.isDirectory();
      }
    }
    dirs.set(dir, ok);
    return ok;
  };
  for (const c of candidates) {
    const from = from0 + c.containerPath;
    const st = lstatSync(from, { throwIfNoEntry: false });
    if (!st || !st.isFile() || st.size !== c.size || (st.mode & 0o7777) !== c.mode || st.uid !== owner.uid || st.gid !== owner.gid) continue;
    // the copy sets mtimes through utimes(seconds as a double), which keeps whole
    // microseconds, truncated, of a value already rounded by the division: the copy of an
    // unchanged file lands up to ~1.3 µs below the context's mtime (at today's epoch a
    // millisecond double alone is only good to ~0.25 µs). Layers keep whole seconds.
    if (Math.abs(st.mtimeMs - c.mtimeMs) >= MTIME_SLACK_MS) continue;
    if (!ensureDir(posix.dirname(c.containerPath))) continue;
    try {
      linkSync(from, to0 + c.containerPath);
      linked.set(c.containerPath, BigInt(st.ino));
    } catch {
      // gone meanwhile (pruned) or already there: the copy writes it
    }
  }
  return linked;
}
