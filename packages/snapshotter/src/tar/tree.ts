import type { Readable } from 'node:stream';
import { join } from 'node:path';
import { fsEntry, HardlinkTracker } from './from-fs.js';
import type { EntryOptions } from './from-fs.js';
import { readTreeXattrs } from './system.js';
import type { TarEntry } from './types.js';
import { scanTree } from './walk.js';
import { packEntries } from './writer.js';

/**
 * Deterministic uncompressed tar of everything below `dir` (the directory itself is not
 * an entry): sorted bytewise, hardlinks as links, xattrs as PAX, overlay-private xattrs
 * dropped, uname/gname empty, mtimes optionally clamped to sourceDateEpoch.
 */
export function treeTarStream(dir: string, opts: EntryOptions & { signal?: AbortSignal } = {}): Readable {
  async function* gen(): AsyncGenerator<TarEntry> {
    const [nodes, xattrs] = await Promise.all([scanTree(dir, opts.signal ? { signal: opts.signal } : {}), readTreeXattrs(dir)]);
    const links = new HardlinkTracker();
    for (const [rel, st] of nodes) {
      const e = fsEntry(rel, join(dir, rel), st, xattrs.get(rel), opts);
      if (e) yield links.resolve(e, st);
    }
  }
  return packEntries(gen(), opts.signal ? { signal: opts.signal } : {});
}
