import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, readdirSync } from 'node:fs';
import { chmod, link, lutimes, mkdir, mkdtemp, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { ContentStore, type Digest } from '../content/index.js';
import { withMount } from '../snapshots/mount.js';
import { openSnapshotter, snapshotLayout } from '../snapshots/snapshotter.js';
import type { Snapshotter } from '../snapshots/types.js';
import { privilegedSkip } from '../testsuite/privileged.js';
import { exportLayer } from './export.js';

const skip = privilegedSkip({ setfattr: 'attr', mount: 'mount' });
const T0 = 1_700_000_000;

/** Paths of the previous layer's files: small, empty, a 3 MiB one (crosses read windows), long and non-ASCII names. */
const LONG = `${'dir-'.repeat(30)}/f-${'é'.repeat(60)}`;
function prevFiles(): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (let d = 0; d < 4; d++) for (let i = 0; i < 30; i++) files.set(`app/d${d}/f${i}.txt`, Buffer.from(`file ${d}/${i}\n`.repeat(i % 5)));
  files.set('app/big.bin', Buffer.alloc(3 * 1024 * 1024 + 17, 7));
  files.set(`app/${LONG}`, Buffer.from('long\n'));
  files.set('app/x-attr', Buffer.from('has an xattr\n'));
  return files;
}

async function writeTree(root: string, files: Map<string, Buffer>): Promise<void> {
  for (const [p, body] of files) {
    await mkdir(dirname(join(root, p)), { recursive: true });
    await writeFile(join(root, p), body);
    await lutimes(join(root, p), T0, T0);
  }
  execFileSync('setfattr', ['-n', 'user.k', '-v', 'v', join(root, 'app/x-attr')]);
}

/** Every regular file below `dir`, relative path → inode (what a relink reports). */
function filesBelow(dir: string, rel = '', out = new Map<string, bigint>()): Map<string, bigint> {
  for (const d of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const p = rel === '' ? d.name : `${rel}/${d.name}`;
    if (d.isDirectory()) filesBelow(dir, p, out);
    else if (d.isFile()) out.set(p, lstatSync(join(dir, p), { bigint: true }).ino);
  }
  return out;
}

/** Hardlinks `paths` from `from` into `to` (creating directories), as the solver's relink does. */
async function linkInto(from: string, to: string, paths: Iterable<string>): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  for (const p of paths) {
    await mkdir(dirname(join(to, p)), { recursive: true });
    await link(join(from, p), join(to, p));
    out.set(p, lstatSync(join(from, p), { bigint: true }).ino);
  }
  return out;
}

/** lstat, or undefined when nothing is there (also when a parent became a file). */
function lstatMaybe(p: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(p, { bigint: true });
  } catch {
    return undefined;
  }
}

type Op = { kind: 'add' | 'delete' | 'modify' | 'chmod' | 'touch' | 'xattr' | 'rename' | 'mkdir' | 'rmdir' | 'dir-to-file' | 'hardlink' | 'symlink'; a: number; b: number };
const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom('add', 'delete', 'modify', 'chmod', 'touch', 'xattr', 'rename', 'mkdir', 'rmdir', 'dir-to-file', 'hardlink', 'symlink'),
  a: fc.nat(),
  b: fc.nat(),
});

/** Applies `op` inside a mounted snapshot; `names` are the linked paths (as mounted). */
async function apply(root: string, names: string[], op: Op): Promise<void> {
  const pick = names[op.a % names.length]!;
  const p = join(root, pick);
  const exists = lstatMaybe(p);
  switch (op.kind) {
    case 'add': {
      const dir = join(root, `app/d${op.b % 5}`);
      if (lstatMaybe(dir)?.isDirectory() === false) return; // turned into a file by dir-to-file
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, `new${op.a % 50}.txt`), `new ${op.b}\n`);
      return;
    }
    case 'delete':
      if (exists?.isFile()) await unlink(p);
      return;
    case 'modify': // a new file in place (a COPY unlinks before it writes)
      if (exists?.isFile()) {
        await unlink(p);
        await writeFile(p, `modified ${op.b}\n`);
        await lutimes(p, T0, T0);
      }
      return;
    case 'chmod': // changes the shared inode: its header then differs from the blob's
      if (exists?.isFile()) await chmod(p, 0o600 + (op.b % 0o100));
      return;
    case 'touch':
      if (exists?.isFile()) await lutimes(p, T0 + 1 + (op.b % 1000), T0 + 1 + (op.b % 1000));
      return;
    case 'xattr':
      if (exists?.isFile()) execFileSync('setfattr', ['-n', `user.x${op.b % 3}`, '-v', `v${op.b}`, p]);
      return;
    case 'rename':
      if (exists?.isFile()) await rename(p, join(dirname(p), `renamed-${op.b % 20}`));
      return;
    case 'mkdir':
      await mkdir(join(root, `app/nd${op.b % 4}/sub`), { recursive: true });
      await writeFile(join(root, `app/nd${op.b % 4}/sub/f`), 'x');
      return;
    case 'rmdir':
      await rm(join(root, `app/d${op.b % 4}`), { recursive: true, force: true });
      return;
    case 'dir-to-file':
      await rm(join(root, `app/d${op.b % 4}`), { recursive: true, force: true });
      await writeFile(join(root, `app/d${op.b % 4}`), 'now a file');
      return;
    case 'hardlink':
      if (exists?.isFile()) await link(p, join(root, `app/0-link-${op.b % 10}`)).catch(() => {});
      return;
    case 'symlink':
      await symlink(pick, join(root, `app/sym-${op.b % 10}`)).catch(() => {});
      return;
  }
}

for (const backend of ['overlay', 'copy'] as const) {
  describe(`layer export reusing the previous layer's entries (${backend})`, { skip }, () => {
    let root: string;
    let s: Snapshotter;
    let store: ContentStore;
    let prevBlob: Digest;
    let n = 0;
    before(async () => {
      root = await mkdtemp(join(tmpdir(), `tsbuild-reuse-${backend}-`));
      s = await openSnapshotter(join(root, 'snap'), { backend });
      store = await ContentStore.open(join(root, 'content'));
      await withMount(await s.prepare('b'), async (d) => {
        await mkdir(join(d, 'etc'));
        await writeFile(join(d, 'etc/base'), 'base\n');
      });
      await s.commit('base', 'b');
    });
    after(async () => {
      await rm(root, { recursive: true, force: true });
    });

    /**
     * The previous run: a committed snapshot and its layer. A fresh one for every rerun, as
     * chmod, touch and setfattr on a linked file change the shared inode (a COPY never does).
     */
    async function previous(): Promise<string> {
      const key = `p-${++n}`;
      await withMount(await s.prepare(key, 'base'), (d) => writeTree(d, prevFiles()));
      prevBlob = (await exportLayer(s, key, store, { compression: 'uncompressed' })).digest;
      await s.commit(`prev-${n}`, key);
      return (await snapshotLayout(s, `prev-${n}`)).dir;
    }

    /** A new snapshot on `base` holding hardlinks of the previous layer's files, then `change` applied through a mount. */
    async function rerun(change: (mounted: string, names: string[]) => Promise<void>): Promise<{ key: string; inodes: Map<string, bigint>; upper: string; names: string[] }> {
      const prevDir = await previous();
      const key = `next-${n}`;
      await s.prepare(key, 'base');
      const upper = (await snapshotLayout(s, key)).dir;
      const names = [...filesBelow(prevDir).keys()].filter((p) => p.startsWith('app/'));
      const inodes = await linkInto(prevDir, upper, names);
      await withMount(await s.mounts(key), (d) => change(d, names));
      return { key, inodes, upper, names };
    }

    it('gives the same bytes as a full export, whatever changed (random changes)', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { maxLength: 12 }), fc.constantFrom<'uncompressed' | 'gzip'>('uncompressed', 'gzip'), async (ops, compression) => {
          const { key, inodes, upper, names } = await rerun(async (d, linked) => {
            for (const op of ops) await apply(d, linked, op);
          });
          // linked files still there with their inode and never chmod'ed, touched, given an xattr or a second name
          const headerOps = new Set(ops.filter((o) => ['chmod', 'touch', 'xattr', 'hardlink'].includes(o.kind)).map((o) => names[o.a % names.length]));
          const untouched = names.filter((p) => !headerOps.has(p) && lstatMaybe(join(upper, p))?.ino === inodes.get(p));
          try {
            const full = await exportLayer(s, key, store, { compression });
            const again = await exportLayer(s, key, store, { compression, reuse: { blob: prevBlob, inodes } });
            assert.equal(again.digest, full.digest, `ops ${JSON.stringify(ops)}`);
            assert.equal(again.diffId, full.diffId);
            assert.equal(full.reusedEntries, 0);
            assert.ok(again.reusedEntries >= untouched.length && again.reusedEntries <= inodes.size, `${again.reusedEntries} reused, ${untouched.length} untouched`);
          } finally {
            await s.remove(key);
            await s.remove(`prev-${n}`);
          }
        }),
        { numRuns: 12 },
      );
    });

    it('reuses every unchanged entry, the big one and the PAX-named one included', async () => {
      const { key, inodes } = await rerun(async (d) => {
        await unlink(join(d, 'app/d1/f3.txt'));
        await writeFile(join(d, 'app/d1/f3.txt'), 'changed\n');
      });
      const full = await exportLayer(s, key, store);
      const again = await exportLayer(s, key, store, { reuse: { blob: prevBlob, inodes } });
      assert.equal(again.digest, full.digest);
      assert.equal(again.reusedEntries, inodes.size - 1, 'all but the changed file');
    });

    it('SOURCE_DATE_EPOCH: headers differ from the blob, nothing is reused, same result', async () => {
      const { key, inodes } = await rerun(async () => {});
      const full = await exportLayer(s, key, store, { sourceDateEpoch: T0 - 10 });
      const again = await exportLayer(s, key, store, { sourceDateEpoch: T0 - 10, reuse: { blob: prevBlob, inodes } });
      assert.equal(again.digest, full.digest);
      assert.equal(again.reusedEntries, 0);
    });

    it('falls back to reading the files: blob absent, not a regular file, or not matching its digest', async () => {
      const { key, inodes } = await rerun(async () => {});
      const full = await exportLayer(s, key, store);
      const absent = `sha256:${'0'.repeat(64)}` as Digest;
      const r1 = await exportLayer(s, key, store, { reuse: { blob: absent, inodes } });
      assert.deepEqual([r1.digest, r1.reusedEntries], [full.digest, 0]);

      // a store whose blob file for that digest is a symlink, then a directory, then damaged bytes
      const other = await ContentStore.open(join(root, `content-${n}`));
      const path = other.blobPath(prevBlob);
      await mkdir(dirname(path), { recursive: true });
      await symlink(store.blobPath(prevBlob), path);
      const r2 = await exportLayer(s, key, other, { reuse: { blob: prevBlob, inodes } });
      assert.deepEqual([r2.digest, r2.reusedEntries], [full.digest, 0]);
      await unlink(path);
      await mkdir(path);
      const r3 = await exportLayer(s, key, other, { reuse: { blob: prevBlob, inodes } });
      assert.deepEqual([r3.digest, r3.reusedEntries], [full.digest, 0]);
      await rm(path, { recursive: true });
      // one body byte of a reused entry flipped: headers still match, the digest does not
      const bytes = await readFile(store.blobPath(prevBlob));
      const at = bytes.indexOf(Buffer.from('file 2/7\n'));
      assert.ok(at > 0);
      bytes[at] = 'F'.charCodeAt(0);
      await writeFile(path, bytes);
      const r4 = await exportLayer(s, key, other, { reuse: { blob: prevBlob, inodes } });
      assert.deepEqual([r4.digest, r4.reusedEntries], [full.digest, 0]);
      assert.equal(await other.has(r4.digest), true);
      // only the good layer was committed (the damaged blob is the test's own file)
      const kept: string[] = [];
      for await (const info of other.walk()) kept.push(info.digest);
      assert.deepEqual(kept.sort(), [full.digest, prevBlob].sort());
    });

    it('an inode that is not the one the previous snapshot had is read from the file', async () => {
      const { key, inodes } = await rerun(async (d) => {
        // same path, same header, new inode with other bytes of the same size
        await unlink(join(d, 'app/d0/f1.txt'));
        await writeFile(join(d, 'app/d0/f1.txt'), 'FILE 0/1\n');
        await lutimes(join(d, 'app/d0/f1.txt'), T0, T0);
      });
      const full = await exportLayer(s, key, store);
      const again = await exportLayer(s, key, store, { reuse: { blob: prevBlob, inodes } });
      assert.equal(again.digest, full.digest);
      assert.equal(again.reusedEntries, inodes.size - 1);
    });
  });
}
