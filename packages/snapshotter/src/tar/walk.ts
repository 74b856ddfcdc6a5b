/**
 * Tree scan for the tar hot path: one readdir(withFileTypes) per directory and one
 * lstat per entry.
 */
import type { BigIntStats } from 'node:fs';
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** A scanned entry: path relative to the scanned root ('' is never included). */
export interface ScannedEntry {
  path: string;
  stat: BigIntStats;
}

/** Bytewise (UTF-8) path order: parents sort before their children. */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Lists every entry below `root` (not following symlinks), sorted bytewise by path.
 * Uses synchronous readdir/lstat in slices, yielding to the event loop every
 * `sliceSize` entries: on local filesystems a sync lstat costs a few µs, while the
 * promise API's thread-pool round trip cost ~35 µs per call here (measured, see README).
 */
export async function scanTree(root: string, opts: { sliceSize?: number; signal?: AbortSignal } = {}): Promise<Map<string, BigIntStats>> {
  const slice = opts.sliceSize ?? 1024;
  const out: Array<{ k: Buffer; p: string; st: BigIntStats }> = [];
  const stack: string[] = [''];
  let n = 0;
  while (stack.length > 0) {
    const rel = stack.pop()!;
    const dirents = readdirSync(rel === '' ? root : join(root, rel), { withFileTypes: true });
    for (const d of dirents) {
      const childRel = rel === '' ? d.name : `${rel}/${d.name}`;
      const st = lstatSync(join(root, childRel), { bigint: true });
      out.push({ k: Buffer.from(childRel, 'utf8'), p: childRel, st });
      if (st.isDirectory()) stack.push(childRel);
      if (++n % slice === 0) {
        await new Promise<void>((r) => setImmediate(r));
        opts.signal?.throwIfAborted();
      }
    }
  }
  out.sort((a, b) => Buffer.compare(a.k, b.k));
  return new Map(out.map((x) => [x.p, x.st]));
}
/** Linux dev_t → (major, minor), glibc encoding. */
export function splitDev(rdev: bigint): { major: number; minor: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { major, minor };
}
