/**
 * Push crash safety (catalog T28; H-CRASH, H-VERIFY): `tsbuild push` (the real CLI)
 * killed with SIGKILL at the crash points `push-blob` and `push-manifest`, then at random
 * moments in a loop, against Debian's docker-registry on loopback. After every kill the
 * registry serves the tag either not at all or as a manifest whose every blob is there
 * (the manifest is put only after all its blobs), the local store checks clean, and the
 * next push succeeds (skipping the blobs already uploaded) and pulls digest-identical.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildStore } from '../store.js';
import { buildTestImage, REGISTRY_BIN, requireTool, startProxy, startRegistry, type Proxy, type RunningRegistry } from '../../../snapshotter/src/registry/test-helpers/registry.js';
import { assertClean, runTsbuild, verifyStore } from './test-helpers/harness.js';

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

interface Blob {
  digest: string;
  size: number;
}

/**
 * What the registry serves for `repo:tag`: 'absent' (404), or the manifest digest after
 * checking that every blob it names is there with its size. Fails on anything else.
 */
async function servedState(host: string, repo: string, tag: string): Promise<'absent' | string> {
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, { headers: { accept: MANIFEST_ACCEPT } });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status === 404) return 'absent';
  assert.equal(res.status, 200, `GET ${repo}:${tag}: expected 200 or 404, found ${res.status}: ${body.toString().slice(0, 300)}`);
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  const manifest = JSON.parse(body.toString()) as { config: Blob; layers: Blob[] };
  for (const b of [manifest.config, ...manifest.layers]) {
    const h = await fetch(`http://${host}/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD' });
    assert.equal(h.status, 200, `${repo}:${tag} (${digest}) is served but its blob ${b.digest} is not (http ${h.status})`);
    assert.equal(Number(h.headers.get('content-length')), b.size, `blob ${b.digest} of ${repo}:${tag}: size`);
  }
  return digest;
}

/** Blob upload sessions opened (POST …/blobs/uploads/) for `repo` since request index `from`. */
function uploadsOpened(proxy: Proxy, repo: string, from: number): number {
  return proxy.requests.slice(from).filter((q) => q.method === 'POST' && q.path.startsWith(`/v2/${repo}/blobs/uploads/`)).length;
}

describe('push crash safety (kill -9 during tsbuild push)', { concurrency: false }, () => {
  let registry: RunningRegistry | undefined;
  let proxy: Proxy | undefined;
  let root = '';
  const roots: string[] = [];
  let localDigest = '';
  let blobCount = 0;
  let ready = false;

  /**
   * A store holding `app:local` (a config and five layers, four of 1 MiB random bytes:
   * several blob uploads to kill). The client remembers which repositories got a blob and
   * mounts from them, so a fresh store is what makes a push upload again.
   */
  async function newStore(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'tsbuild-push-crash-'));
    roots.push(dir);
    const store = await BuildStore.open(dir);
    try {
      // (the helper is typed against the snapshotter's sources, the store against its build: same class)
      const img = await buildTestImage(store.content as unknown as Parameters<typeof buildTestImage>[0], { tag: 't28', bigLayers: 4, bigSize: 1024 * 1024 });
      await store.images.tag('app:local', img);
      if (localDigest === '') localDigest = img.manifestDigest;
      assert.equal(img.manifestDigest, localDigest, 'the test image is deterministic');
      blobCount = 1 + img.manifest.layers.length;
    } finally {
      await store.close();
    }
    return dir;
  }

  before(async () => {
    ready = existsSync(REGISTRY_BIN);
    if (!ready) return; // each test fails (CI, root) or skips naming the package
    registry = await startRegistry();
    proxy = await startProxy(registry.host);
    root = await newStore();
  });
  after(async () => {
    await proxy?.stop();
    await registry?.stop();
    for (const r of roots) await rm(r, { recursive: true, force: true });
  });

  const push = (repo: string, env: Record<string, string> = {}, killAfterMs?: number, at = root) =>
    runTsbuild(at, ['push', '--quiet', 'app:local', `${proxy!.host}/${repo}:v1`], { env, ...(killAfterMs !== undefined ? { killAfterMs } : {}) });

  /** The clean re-push after a kill: succeeds, prints the local digest, opens no upload for a blob already there. */
  async function repushAndCheck(repo: string, blobsAlreadyThere: number, at = root): Promise<void> {
    const mark = proxy!.requests.length;
    const r = await push(repo, {}, undefined, at);
    assert.equal(r.code, 0, `re-push to ${repo} failed (exit ${r.code}, ${r.signal}):\n${r.stderr.slice(-2000)}`);
    assert.equal(r.stdout.trim(), localDigest);
    assert.equal(await servedState(registry!.host, repo, 'v1'), localDigest);
    assert.ok(uploadsOpened(proxy!, repo, mark) <= blobCount - blobsAlreadyThere, `re-push to ${repo} opened ${uploadsOpened(proxy!, repo, mark)} uploads, ${blobsAlreadyThere} of ${blobCount} blobs were already there`);
  }

  /** How many of the image's blobs the repository holds. */
  async function blobsIn(repo: string): Promise<number> {
    const store = await BuildStore.open(root);
    let n = 0;
    try {
      const img = await store.images.get('app:local');
      for (const b of [img.manifest.config, ...img.manifest.layers]) {
        const h = await fetch(`http://${registry!.host}/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD' });
        if (h.status === 200) n++;
      }
    } finally {
      await store.close();
    }
    return n;
  }

  test('T28: killed at push-blob and push-manifest, the tag is absent, the store is clean and the re-push completes', async (t) => {
    if (!requireTool(t, REGISTRY_BIN, 'docker-registry') || !ready) return;
    const cases: [string, number][] = [['push-blob@1', 1], ['push-blob@3', 3], [`push-blob@${blobCount}`, blobCount], ['push-manifest', blobCount]];
    for (const [i, [point, uploaded]] of cases.entries()) {
      const repo = `t28/point${i}`;
      const at = await newStore(); // uploads, no mounts from the earlier cases
      const r = await push(repo, { TSBUILD_CRASH_AT: point }, undefined, at);
      assert.equal(r.signal, 'SIGKILL', `expected the push to reach ${point} and die, it exited ${r.code}:\n${r.stderr.slice(-2000)}`);
      // no manifest before all its blobs: the tag does not exist yet
      assert.equal(await servedState(registry!.host, repo, 'v1'), 'absent', `after a kill at ${point}`);
      const there = await blobsIn(repo);
      assert.ok(there >= uploaded, `after a kill at ${point}: expected at least ${uploaded} blob(s) uploaded, found ${there}`);
      assertClean(await verifyStore(at), `after a kill at ${point}`);
      await repushAndCheck(repo, there, at);
    }
  });

  test('T28: a random-delay kill -9 loop never leaves a served manifest with missing blobs; the pushed image pulls digest-identical', async (t) => {
    if (!requireTool(t, REGISTRY_BIN, 'docker-registry') || !ready) return;
    // how long a whole push takes here, to spread the kills over it (process start included)
    const timed = await push('t28/timing');
    assert.equal(timed.code, 0, `timing push failed:\n${timed.stderr.slice(-2000)}`);
    const span = Math.max(200, timed.ms);
    let seed = 0x2828;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    let killed = 0;
    for (let i = 0; i < 10; i++) {
      const repo = `t28/loop${i}`;
      // even iterations upload from a fresh store; odd ones reuse the first store, which mounts blobs it pushed before
      const at = i % 2 === 0 ? await newStore() : root;
      const r = await push(repo, {}, Math.floor(span * (0.15 + 0.85 * rand())), at);
      if (r.signal === 'SIGKILL') killed++;
      else assert.equal(r.code, 0, `push ${i} failed without being killed:\n${r.stderr.slice(-2000)}`);
      const state = await servedState(registry!.host, repo, 'v1');
      if (state !== 'absent') assert.equal(state, localDigest, `loop ${i}: the tag names another manifest`);
      assertClean(await verifyStore(at), `after loop iteration ${i}`);
      await repushAndCheck(repo, await blobsIn(repo), at);
    }
    t.diagnostic(`${killed} of 10 pushes killed (push time ${timed.ms} ms)`);
    assert.ok(killed >= 3, `expected most pushes to be killed mid-way, only ${killed} of 10 were`);
    // the image pulls into a clean store with the local digest
    const fresh = await mkdtemp(join(tmpdir(), 'tsbuild-push-crash-pull-'));
    roots.push(fresh);
    const p = await runTsbuild(fresh, ['pull', `${proxy!.host}/t28/loop0:v1`]);
    assert.equal(p.code, 0, `pull failed:\n${p.stderr.slice(-2000)}`);
    assert.equal(p.stdout.trim(), localDigest);
    assertClean(await verifyStore(fresh), 'the pulling store');
  });
});
