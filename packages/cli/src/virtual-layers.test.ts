// Virtual layers from the command line: an image whose layers are all virtual blobs
// (TSBUILD_VIRTUAL_LAYER_MIN_BYTES=0) gives the same digest as one with written blobs,
// saves to an archive docker loads and runs, pushes and pulls through a registry, keeps
// its snapshots through `cache prune --all`, and a lost snapshot is a missing blob that
// `cache check` reports and repairs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chainId, DEFAULT_MOUNT_STUBS, snapshotDiffRecipe, type Digest } from '@tsbuild/snapshotter';
import { BuildStore } from '@tsbuild/solver';
import { REGISTRY_BIN, startRegistry, type RunningRegistry } from '../../snapshotter/src/registry/test-helpers/registry.js';
import { docker, dockerAvailable, hasCommand, requirePrereq, requireRoot, storeWithBusybox, tsbuild, type CliResult } from './test/cli-helpers.js';

const TAG = 'tsbuild-e2e/virtual:latest';
const VIRTUAL = { SOURCE_DATE_EPOCH: '0', TSBUILD_VIRTUAL_LAYER_MIN_BYTES: '0' };
const WRITTEN = { SOURCE_DATE_EPOCH: '0', TSBUILD_VIRTUAL_LAYER_MIN_BYTES: 'off' };

function ok(r: CliResult, what: string): void {
  assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stderr}`);
}

async function digestOf(root: string, name: string): Promise<{ digest: string; layers: string[] }> {
  const store = await BuildStore.open(root);
  try {
    const img = await store.images.resolve(name);
    assert.ok(img, `expected ${name} in ${root}`);
    return { digest: img.manifestDigest, layers: img.manifest.layers.map((l) => l.digest) };
  } finally {
    await store.close();
  }
}

async function virtualRecords(root: string): Promise<string[]> {
  return (await readdir(join(root, 'virtual', 'sha256')).catch(() => [] as string[])).map((h) => `sha256:${h}`);
}

describe('virtual layers (CLI)', { concurrency: false }, () => {
  let a = { root: '', cleanup: async (): Promise<void> => {} };
  let b = { root: '', cleanup: async (): Promise<void> => {} };
  let work = '';
  let ready = false;
  let image = { digest: '', layers: [] as string[] };

  before(async (t) => {
    ready = requireRoot(t) && requirePrereq(t, hasCommand('busybox'), 'busybox', 'busybox-static') && requirePrereq(t, hasCommand('runc'), 'runc', 'runc');
    if (!ready) return;
    a = await storeWithBusybox();
    // the same busybox:local in both stores (an import is not reproducible without SOURCE_DATE_EPOCH)
    const copy = await mkdtemp(join(tmpdir(), 'tsbuild-virtual-cli-b-'));
    execFileSync('cp', ['-a', `${a.root}/.`, copy]);
    b = { root: copy, cleanup: () => rm(copy, { recursive: true, force: true }) };
    work = await mkdtemp(join(tmpdir(), 'tsbuild-virtual-cli-'));
  });
  after(async () => {
    await a.cleanup();
    await b.cleanup();
    if (work) await rm(work, { recursive: true, force: true });
    if (dockerAvailable()) docker(['rmi', '-f', TAG]);
  });

  it('builds an image of virtual layers with the digest of written ones', async (t) => {
    if (!ready) return t.skip('prerequisites missing');
    ok(await tsbuild(a.root, ['build', '-q', '-t', TAG, 'fixtures/hello'], { env: VIRTUAL }), 'virtual build');
    ok(await tsbuild(b.root, ['build', '-q', '-t', TAG, 'fixtures/hello'], { env: WRITTEN }), 'written build');
    image = await digestOf(a.root, TAG);
    assert.equal(image.digest, (await digestOf(b.root, TAG)).digest);
    const virtual = await virtualRecords(a.root);
    const built = image.layers.slice(1); // the first is busybox:local's, imported as a blob
    assert.ok(built.length >= 3);
    for (const l of built) {
      assert.ok(virtual.includes(l), `expected layer ${l} to be virtual`);
      assert.equal(existsSync(join(a.root, 'blobs', 'sha256', l.slice(7))), false, `no blob file for ${l}`);
    }
    assert.deepEqual(await virtualRecords(b.root), []);
    const check = await tsbuild(a.root, ['cache', 'check', '--format', 'json']);
    ok(check, 'cache check');
    assert.equal((JSON.parse(check.stdout) as { ok: boolean }).ok, true);
  });

  it('saves an archive that loads into a clean store (layers re-verified) and into docker', async (t) => {
    if (!ready) return t.skip('prerequisites missing');
    const tar = join(work, 'virtual.tar');
    ok(await tsbuild(a.root, ['save', TAG, '-o', tar]), 'save');
    const other = join(work, 'loaded');
    ok(await tsbuild(other, ['load', '-i', tar]), 'load into a clean store');
    assert.equal((await digestOf(other, TAG)).digest, image.digest);
    if (!requirePrereq(t, dockerAvailable(), 'a running dockerd (scripts/start-services.sh)', 'docker.io')) return;
    const load = docker(['load', '-i', tar]);
    assert.equal(load.code, 0, load.stderr);
    const run = docker(['run', '--rm', '--network', 'host', TAG]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'hello from tsbuild\nbuilt by a TypeScript container builder\n');
  });

  it('pushes to a registry (virtual blobs materialised first) and pulls back the same digest', async (t) => {
    if (!ready) return t.skip('prerequisites missing');
    if (!requirePrereq(t, existsSync(REGISTRY_BIN), 'docker-registry', 'docker-registry')) return;
    let registry: RunningRegistry | undefined;
    try {
      registry = await startRegistry();
      const ref = `${registry.host}/e2e/virtual:1`;
      ok(await tsbuild(a.root, ['push', TAG, ref]), 'push');
      const pulled = join(work, 'pulled');
      const p = await tsbuild(pulled, ['pull', ref]);
      ok(p, 'pull');
      assert.equal(p.stdout.trim(), image.digest);
    } finally {
      await registry?.stop();
    }
  });

  it('cache prune --all keeps the snapshots behind the image; without the image they go with their records', async (t) => {
    if (!ready) return t.skip('prerequisites missing');
    // a fresh virtual store (the push above materialised a's layers)
    const c = await storeWithBusybox();
    try {
      ok(await tsbuild(c.root, ['build', '-q', '-t', TAG, 'fixtures/hello'], { env: VIRTUAL }), 'build');
      const before = await virtualRecords(c.root);
      assert.ok(before.length >= 3);
      ok(await tsbuild(c.root, ['cache', 'prune', '--all', '--force']), 'prune --all');
      assert.deepEqual((await virtualRecords(c.root)).sort(), [...before].filter((d) => image.layers.includes(d)).sort());
      ok(await tsbuild(c.root, ['save', TAG, '-o', join(work, 'after-prune.tar')]), 'save after prune --all');
      const check = await tsbuild(c.root, ['cache', 'check', '--format', 'json']);
      ok(check, 'cache check after prune');
      ok(await tsbuild(c.root, ['rmi', TAG]), 'rmi');
      ok(await tsbuild(c.root, ['cache', 'prune', '--all', '--force']), 'prune --all without the image');
      assert.deepEqual(await virtualRecords(c.root), []);
    } finally {
      await c.cleanup();
    }
  });

  it('a virtual blob whose snapshot is gone is missing: cache check reports it and the image, --repair drops both', async (t) => {
    if (!ready) return t.skip('prerequisites missing');
    const top = image.layers[image.layers.length - 1]!;
    const s = await BuildStore.open(a.root);
    try {
      // a's layers were materialised by the push: make the top one virtual again
      const rec = { digest: top as Digest, size: (await s.content.info(top as Digest)).size };
      const chain = (await s.images.resolve(TAG))!.config.rootfs.diff_ids;
      const key = chainId(chain)!;
      await s.content.delete(rec.digest);
      await s.content.addVirtual({ ...rec, recipe: snapshotDiffRecipe(key, { sourceDateEpoch: 0, mountStubs: [...DEFAULT_MOUNT_STUBS] }) });
      assert.equal(await s.content.has(rec.digest), true, 'the top layer regenerates from its snapshot');
      await s.snapshots.remove(key);
      assert.equal(await s.content.has(rec.digest), false);
    } finally {
      await s.close();
    }
    const check = await tsbuild(a.root, ['cache', 'check', '--format', 'json']);
    assert.notEqual(check.code, 0);
    const report = JSON.parse(check.stdout) as { issues: { kind: string; subject: string }[] };
    assert.ok(report.issues.some((i) => i.kind === 'blob-unbacked' && i.subject === top), check.stdout);
    assert.ok(report.issues.some((i) => i.kind === 'image-broken' && i.subject.includes('tsbuild-e2e/virtual')), check.stdout);
    ok(await tsbuild(a.root, ['cache', 'check', '--repair']), 'repair');
    ok(await tsbuild(a.root, ['cache', 'check']), 'check after repair');
    assert.ok(!(await virtualRecords(a.root)).includes(top), 'the unbacked record is gone');
    assert.notEqual((await tsbuild(a.root, ['save', TAG, '-o', join(work, 'x.tar')])).code, 0, 'the broken name was untagged');
  });
});
