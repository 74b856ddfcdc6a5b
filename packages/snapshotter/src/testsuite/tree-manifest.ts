/** Test helper: a comparable description of a directory tree (types, owners, modes, contents, xattrs, hardlink groups). */
import { createHash } from 'node:crypto';
import { readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isOverlayPrivateXattr } from '../tar/from-fs.js';
import { readTreeXattrs } from '../tar/system.js';
import { scanTree, splitDev } from '../tar/walk.js';

export async function treeManifest(dir: string, opts: { mtimes?: boolean; ignore?: (p: string) => boolean } = {}): Promise<string[]> {
  const [nodes, xattrs] = await Promise.all([scanTree(dir), readTreeXattrs(dir)]);
  const firstPathOfInode = new Map<string, string>();
  const out: string[] = [];
  for (const [rel, st] of nodes) {
    if (opts.ignore?.(rel)) continue;
    let kind = '';
    if (st.isFile()) kind = `file ${st.size} ${createHash('sha256').update(await readFile(join(dir, rel))).digest('hex').slice(0, 16)}`;
    else if (st.isDirectory()) kind = 'dir';
    else if (st.isSymbolicLink()) kind = `symlink ${await readlink(join(dir, rel))}`;
    else if (st.isFIFO()) kind = 'fifo';
    else {
      const { major, minor } = splitDev(st.rdev);
      kind = `${st.isCharacterDevice() ? 'char' : 'block'} ${major}:${minor}`;
    }
    const x = [...(xattrs.get(rel) ?? new Map<string, Buffer>())]
      .filter(([k]) => !isOverlayPrivateXattr(k))
      .map(([k, v]) => `${k}=${v.toString('hex')}`)
      .sort()
      .join(',');
    let link = '';
    if (!st.isDirectory() && st.nlink > 1n) {
      const id = `${st.dev}:${st.ino}`;
      const first = firstPathOfInode.get(id);
      if (first === undefined) firstPathOfInode.set(id, rel);
      else link = ` =link(${first})`;
    }
    const mtime = opts.mtimes && !st.isDirectory() ? ` t=${st.mtimeNs / 1_000_000_000n}` : '';
    out.push(`${rel}: ${kind} ${(st.mode & 0o7777n).toString(8)} ${st.uid}:${st.gid}${mtime} [${x}]${link}`);
  }
  return out;
}
