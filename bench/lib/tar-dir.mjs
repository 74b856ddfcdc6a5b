// Fallback tar of a directory through tar-stream (used only when the library's differ,
// exportLayer, is not exported): sorted walk, regular files and dirs, mtime 0, uid/gid 0,
// reads kept a few files ahead of the packer.
import { readdir, readFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import tar from 'tar-stream';

async function* walk(root, rel = '') {
  const names = (await readdir(join(root, rel))).sort();
  for (const n of names) {
    const r = rel ? `${rel}/${n}` : n;
    const st = await lstat(join(root, r));
    if (st.isDirectory()) {
      yield { rel: r, dir: true, mode: st.mode & 0o7777 };
      yield* walk(root, r);
    } else if (st.isFile()) {
      yield { rel: r, dir: false, mode: st.mode & 0o7777, size: st.size };
    }
  }
}

export function tarOfDir(root) {
  const pack = tar.pack();
  (async () => {
    const ahead = [];
    const it = walk(root);
    const entry = (h, data) => new Promise((res, rej) => pack.entry(h, data, (e) => (e ? rej(e) : res())));
    const fill = async () => {
      while (ahead.length < 16) {
        const r = await it.next();
        if (r.done) return;
        const e = r.value;
        ahead.push({ e, data: e.dir ? undefined : readFile(join(root, e.rel)) });
      }
    };
    for (;;) {
      await fill();
      const next = ahead.shift();
      if (!next) break;
      const { e } = next;
      const h = { name: e.dir ? `${e.rel}/` : e.rel, mode: e.mode, mtime: new Date(0), uid: 0, gid: 0, type: e.dir ? 'directory' : 'file' };
      if (e.dir) await entry(h);
      else await entry({ ...h, size: e.size }, await next.data);
    }
    pack.finalize();
  })().catch((err) => pack.destroy(err));
  return pack;
}
