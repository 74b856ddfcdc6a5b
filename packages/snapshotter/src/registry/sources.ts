import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, type ContentStore } from '../content/content-store.js';
import { isDigest, type Digest } from '../content/digest.js';
import { withLockFile } from '../image/lock-file.js';
import { isErrno } from '../util/process.js';

/**
 * Which registry repositories each blob is known to exist in (`domain/path`, most
 * recent first), so a push can ask for a cross-repository mount instead of uploading.
 * Kept next to the store's index.json as `registry-sources.json`; updates take a lock
 * file and replace the file atomically (temp + fsync + rename), so a crash leaves either
 * the old or the new version. It is a hint only: a wrong entry just costs a failed mount.
 */
const FILE = 'registry-sources.json';
const MAX_SOURCES_PER_BLOB = 5;
const MAX_FILE_SIZE = 64 * 1024 * 1024;

type SourceMap = Record<string, string[]>;

async function load(path: string): Promise<SourceMap> {
  let text: string;
  try {
    const buf = await readFile(path);
    if (buf.byteLength > MAX_FILE_SIZE) return {};
    text = buf.toString('utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return {};
    throw err;
  }
  try {
    const v = JSON.parse(text) as { blobs?: unknown };
    const out: SourceMap = {};
    if (typeof v.blobs !== 'object' || v.blobs === null) return out;
    for (const [d, list] of Object.entries(v.blobs)) {
      if (isDigest(d) && Array.isArray(list)) out[d] = list.filter((x): x is string => typeof x === 'string');
    }
    return out;
  } catch {
    return {}; // a hint file from a broken writer: start over rather than fail a push
  }
}

/** Repositories (`domain/path`) `digest` was pulled from or pushed to, most recent first. */
export async function blobSources(store: ContentStore): Promise<SourceMap> {
  return load(join(store.root, FILE));
}

/** Records that every digest in `digests` now exists in `repo` (`domain/path`). */
export async function recordBlobSources(store: ContentStore, repo: string, digests: Iterable<Digest>): Promise<void> {
  const path = join(store.root, FILE);
  await withLockFile(`${path}.lock`, async () => {
    const map = await load(path);
    let changed = false;
    for (const d of digests) {
      const list = map[d] ?? [];
      if (list[0] === repo) continue;
      map[d] = [repo, ...list.filter((r) => r !== repo)].slice(0, MAX_SOURCES_PER_BLOB);
      changed = true;
    }
    if (!changed) return;
    const sorted: SourceMap = {};
    for (const k of Object.keys(map).sort()) sorted[k] = map[k]!;
    const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(JSON.stringify({ version: 1, blobs: sorted }));
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await fsyncDir(store.root);
  });
}
