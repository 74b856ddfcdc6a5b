import { existsSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { benchDir, ensureTree, sh } from './common.mjs';

/** A GNU tar file of the export tree in BENCH_DIR (made once), for compression-only benches. */
export async function ensureTarFile() {
  const tree = await ensureTree();
  await tree.snapshotter?.close();
  const file = join(await benchDir(), `tree-${tree.files}-${tree.bytes}.tar`);
  if (!existsSync(file)) {
    await sh(`tar -cf '${file}.tmp' -C '${tree.dir}' .`, { time: false });
    await rename(`${file}.tmp`, file);
  }
  return { file, tree };
}
