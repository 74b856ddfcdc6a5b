import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile, link, chown, chmod, readFile, utimes, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ContentStore } from '../content/index.js';
import { applyLayer } from '../apply/apply-layer.js';
import { unpackImage } from '../apply/unpack.js';
import { withMount } from '../snapshots/mount.js';
import { openSnapshotter } from '../snapshots/snapshotter.js';
import type { Snapshotter } from '../snapshots/types.js';
import { readTar } from '../tar/reader.js';
import { privilegedSkip } from '../testsuite/privileged.js';
import { treeManifest } from '../testsuite/tree-manifest.js';
import { diffTarStream, exportLayer } from './export.js';

const skip = privilegedSkip({ getfattr: 'attr', setfattr: 'attr', mount: 'mount', mknod: 'coreutils', umoci: 'umoci' });
// security.capability v2: cap_net_bind_service permitted.
const CAP = '0x0100000200040000000000000000000000000000';
const LONG_DIR = Array.from({ length: 6 }, (_, i) => `dir${i}-${'x'.repeat(50)}`).join('/'); // > 255 bytes
const LONG_FILE = `f-${'é'.repeat(60)}`; // > 100 bytes, non-ASCII

function sh(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

async function buildBase(d: string, mtime: number): Promise<void> {
  await mkdir(join(d, 'etc'));
  await writeFile(join(d, 'etc/conf'), 'conf\n');
  await mkdir(join(d, 'bin'));
  await writeFile(join(d, 'bin/tool'), 'tool');
  await chmod(join(d, 'bin/tool'), 0o4755);
  sh('setfattr', ['-n', 'security.capability', '-v', CAP, join(d, 'bin/tool')]);
  await writeFile(join(d, 'xattr-file'), 'x');
  sh('setfattr', ['-n', 'user.foo', '-v', 'bar', join(d, 'xattr-file')]);
  await mkdir(join(d, 'a'));
  await writeFile(join(d, 'a/h1'), 'hardlinked');
  await link(join(d, 'a/h1'), join(d, 'a/h2'));
  await symlink('../etc/conf', join(d, 'a/rel'));
  await symlink('/etc/conf', join(d, 'abs'));
  sh('mknod', [join(d, 'fifo'), 'p']);
  sh('mknod', [join(d, 'null2'), 'c', '1', '3']);
  sh('mknod', [join(d, 'sda'), 'b', '8', '0']);
  await mkdir(join(d, LONG_DIR), { recursive: true });
  await writeFile(join(d, LONG_DIR, LONG_FILE), 'long');
  for (const p of ['d/x', 'd/y/z', 'gone/sub/f', 'dirfile/c']) {
    await mkdir(join(d, p, '..'), { recursive: true });
    await writeFile(join(d, p), p);
  }
  await writeFile(join(d, 'filedir'), 'f');
  await mkdir(join(d, 'owned'));
  await writeFile(join(d, 'owned/f'), 'o');
  await chown(join(d, 'owned/f'), 1234, 5678);
  sh('find', [d, '-mindepth', '1', '-exec', 'touch', '-h', '-d', `@${mtime}`, '{}', '+']);
}

async function mutate(d: string, mtime: number): Promise<void> {
  await rm(join(d, 'etc/conf'));
  await rm(join(d, 'gone'), { recursive: true });
  await rm(join(d, 'dirfile'), { recursive: true });
  await writeFile(join(d, 'dirfile'), 'now a file');
  await rm(join(d, 'filedir'));
  await mkdir(join(d, 'filedir'));
  await writeFile(join(d, 'filedir/in'), 'in');
  await rm(join(d, 'd'), { recursive: true });
  await mkdir(join(d, 'd'));
  await writeFile(join(d, 'd/new'), 'new');
  await writeFile(join(d, 'xattr-file'), 'changed');
  await writeFile(join(d, 'added'), 'added');
  sh('setfattr', ['-n', 'user.k', '-v', '0x00ff', join(d, 'added')]);
  await link(join(d, 'added'), join(d, 'added-link'));
  const changed = ['etc', '.', 'dirfile', 'filedir', 'filedir/in', 'd', 'd/new', 'xattr-file', 'added'].map((p) => join(d, p));
  sh('touch', ['-h', '-d', `@${mtime}`, ...changed]);
}

async function names(tar: Readable): Promise<string[]> {
  const out: string[] = [];
  for await (const e of readTar(tar)) {
    out.push(`${e.type === 'link' ? 'L ' : ''}${e.path}`);
    for await (const _ of e.body) void _;
  }
  return out;
}

async function digestOf(tar: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const c of tar) h.update(c as Buffer);
  return h.digest('hex');
}

for (const backend of ['overlay', 'copy'] as const) {
  describe(`differ (${backend})`, { skip }, () => {
    let root: string;
    let s: Snapshotter;
    before(async () => {
      root = await mkdtemp(join(tmpdir(), `tsbuild-diff-${backend}-`));
      s = await openSnapshotter(join(root, 'snap'), { backend });
      await withMount(await s.prepare('b'), (d) => buildBase(d, 1_600_000_000));
      await s.commit('base', 'b');
      await withMount(await s.prepare('child', 'base'), (d) => mutate(d, 1_700_000_000));
    });
    after(async () => {
      await rm(root, { recursive: true, force: true });
    });

    it('emits whiteouts, opaque dirs, replacements and hardlinks', async () => {
      const n = await names(diffTarStream(s, 'child'));
      for (const want of ['etc/.wh.conf', '.wh.gone', 'dirfile', 'filedir', 'filedir/in', 'd/new', 'added', 'L added-link', 'xattr-file']) {
        assert.ok(n.includes(want), `missing ${want} in ${JSON.stringify(n)}`);
      }
      if (backend === 'overlay') assert.ok(n.includes('d/.wh..wh..opq'), JSON.stringify(n));
      else assert.ok(n.includes('d/.wh.x') && n.includes('d/.wh.y'), JSON.stringify(n));
      assert.ok(!n.includes('gone/sub/f') && !n.some((x) => x.startsWith('gone/')));
      assert.ok(!n.includes('bin/tool'), 'unchanged files are not in the diff');
      const sorted = [...n.map((x) => x.replace(/^L /, ''))].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      assert.deepEqual(n.map((x) => x.replace(/^L /, '')), sorted, 'entries sorted bytewise');
    });

    it('base layer + diff applied to a directory reproduce the snapshot (xattrs, caps, devices, long names, hardlinks)', async () => {
      const target = await mkdtemp(join(root, 'apply-'));
      await applyLayer(diffTarStream(s, 'base'), target);
      await applyLayer(diffTarStream(s, 'child'), target);
      const want = await withMount(await s.mounts('child'), (d) => treeManifest(d, { mtimes: true }));
      assert.deepEqual(await treeManifest(target, { mtimes: true }), want);
      assert.ok(want.some((l) => l.startsWith('bin/tool: file 4 ') && l.includes(' 4755 ') && l.includes('security.capability=')));
      assert.ok(want.some((l) => l.startsWith(`${LONG_DIR}/${LONG_FILE}: file`)));
    });

    it('exportLayer → content store → unpackImage reproduces the snapshot; the same tree gives the same digest', async () => {
      const store = await ContentStore.open(join(root, 'content'));
      const l1 = await exportLayer(s, 'base', store);
      const l2 = await exportLayer(s, 'child', store);
      assert.equal(l2.empty, false);
      assert.equal((await exportLayer(s, 'child', store)).digest, l2.digest, 'deterministic');
      const top = await unpackImage(store, s, [l1, l2]);
      const got = await withMount(await s.view('unpacked-view', top), (d) => treeManifest(d, { mtimes: true }));
      const want = await withMount(await s.mounts('child'), (d) => treeManifest(d, { mtimes: true }));
      assert.deepEqual(got, want);
      assert.equal(await unpackImage(store, s, [l1, l2]), top, 'existing chain reused');
    });

    it('SOURCE_DATE_EPOCH clamping makes trees with different mtimes export identically', async () => {
      const s2 = await openSnapshotter(join(root, 'snap2'), { backend });
      await withMount(await s2.prepare('b'), (d) => buildBase(d, 1_650_000_000));
      const epoch = 1_000_000;
      const a = await digestOf(diffTarStream(s, 'base', { sourceDateEpoch: epoch }));
      const b = await digestOf(diffTarStream(s2, 'b', { sourceDateEpoch: epoch }));
      assert.equal(a, b);
      assert.notEqual(await digestOf(diffTarStream(s, 'base')), await digestOf(diffTarStream(s2, 'b')));
    });

    it('drops empty mount stubs the runtime created, keeps real changes', async () => {
      await withMount(await s.prepare('stubs', 'base'), async (d) => {
        for (const p of ['proc', 'sys', 'dev/pts', 'dev/shm']) await mkdir(join(d, p), { recursive: true });
        await writeFile(join(d, 'etc/hosts'), '');
        await writeFile(join(d, 'etc/resolv.conf'), 'nameserver 1.1.1.1\n');
      });
      const n = await names(diffTarStream(s, 'stubs'));
      assert.ok(!n.some((x) => /^(proc|sys|dev)(\/|$)/.test(x)) && !n.includes('etc/hosts'), JSON.stringify(n));
      assert.ok(n.includes('etc/resolv.conf'), JSON.stringify(n));
      await withMount(await s.prepare('nothing', 'base'), async (d) => {
        await mkdir(join(d, 'proc'));
      });
      const store = await ContentStore.open(join(root, 'content'));
      assert.equal((await exportLayer(s, 'nothing', store)).empty, true);
    });
  });
}

describe('umoci unpacks a layer we wrote', { skip }, () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'tsbuild-umoci-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });
  it('to the tree we started from', async () => {
    const s = await openSnapshotter(join(root, 'snap'));
    await withMount(await s.prepare('b'), (d) => buildBase(d, 1_600_000_000));
    const tar: Buffer[] = [];
    for await (const c of diffTarStream(s, 'b')) tar.push(c as Buffer);
    const layer = Buffer.concat(tar);
    const oci = join(root, 'oci');
    await mkdir(join(oci, 'blobs/sha256'), { recursive: true });
    const put = async (b: Buffer): Promise<{ digest: string; size: number }> => {
      const hex = createHash('sha256').update(b).digest('hex');
      await writeFile(join(oci, 'blobs/sha256', hex), b);
      return { digest: `sha256:${hex}`, size: b.length };
    };
    const l = await put(layer);
    const config = await put(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [l.digest] } })));
    const manifest = await put(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l }],
        }),
      ),
    );
    await writeFile(join(oci, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(
      join(oci, 'index.json'),
      JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 't' } }] }),
    );
    sh('umoci', ['unpack', '--image', `${oci}:t`, join(root, 'bundle')]);
    const want = await withMount(await s.mounts('b'), (d) => treeManifest(d, { mtimes: true }));
    assert.deepEqual(await treeManifest(join(root, 'bundle/rootfs'), { mtimes: true }), want);
    void readFile;
    void utimes;
    void truncate;
  });
});
