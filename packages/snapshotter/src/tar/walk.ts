/**
 * Tree scan for the tar hot path: one readdir(withFileTypes) per directory and one
 * lstat per entry, with lstats overlapped (bounded concurrency).
 */
import { lstat, readdir } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { join } from 'node:path';
import pLimit from 'p-limit';

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
 */
export async function scanTree(root: string, opts: { concurrency?: number; signal?: AbortSignal } = {}): Promise<Map<string, BigIntStats>> {
  const limit = pLimit(opts.concurrency ?? 32);
  const out = new Map<string, BigIntStats>();
  async function visit(rel: string): Promise<void> {
    opts.signal?.throwIfAborted();
    const dirents = await limit(() => readdir(rel === '' ? root : join(root, rel), { withFileTypes: true }));
    await Promise.all(
      dirents.map(async (d) => {
        const childRel = rel === '' ? d.name : `${rel}/${d.name}`;
        const st = await limit(() => lstat(join(root, childRel), { bigint: true }));
        out.set(childRel, st);
        if (st.isDirectory()) await visit(childRel);
      }),
    );
  }
  await visit('');
  const keyed = [...out.entries()].map((e) => ({ k: Buffer.from(e[0], 'utf8'), e }));
  keyed.sort((a, b) => Buffer.compare(a.k, b.k));
  return new Map(keyed.map((x) => x.e));
}

/** Linux dev_t → (major, minor), glibc encoding. */
export function splitDev(rdev: bigint): { major: number; minor: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { major, minor };
}
