import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { build, type BuildOptions } from '../index.js';
import type { ProgressEvent } from '../progress.js';
import { REPO_ROOT, requireBuildPrereqs, tempStoreWithBusybox, type TestStore } from '../test-helpers/store.js';

/** Lists the member names of an uncompressed tar (ustar + PAX path records). */
function tarNames(tar: Buffer): string[] {
  const names: string[] = [];
  let off = 0;
  let paxPath: string | undefined;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const size = parseInt(h.subarray(124, 136).toString('ascii').replace(/\0.*$/, '').trim() || '0', 8);
    const type = String.fromCharCode(h[156]);
    const name = h.subarray(0, 100).toString('utf8').replace(/\0.*$/, '');
    const prefix = h.subarray(345, 500).toString('utf8').replace(/\0.*$/, '');
    const body = tar.subarray(off + 512, off + 512 + size);
    if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(body.toString('utf8'));
      if (m) paxPath = m[1];
    } else {
      names.push(paxPath ?? (prefix ? `${prefix}/${name}` : name));
      paxPath = undefined;
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

/** The body of the first tar member whose name matches. */
function tarFile(tar: Buffer, name: RegExp): Buffer | undefined {
  let off = 0;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const size = parseInt(h.subarray(124, 136).toString('ascii').replace(/\0.*$/, '').trim() || '0', 8);
    const n = h.subarray(0, 100).toString('utf8').replace(/\0.*$/, '');
    if (name.test(n)) return tar.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return undefined;
}

describe('build', { concurrency: false }, () => {
  let ts: TestStore;
  let ctx: string;
  let ok = true;

  before(async (t) => {
    ok = requireBuildPrereqs(t);
    if (!ok) return;
    ts = await tempStoreWithBusybox();
    ctx = await mkdtemp(join(tmpdir(), 'tsbuild-ctx-'));
    await cp(join(REPO_ROOT, 'fixtures', 'hello'), ctx, { recursive: true });
  });
  after(async () => {
    if (!ok) return;
    await ts.cleanup();
    await rm(ctx, { recursive: true, force: true });
  });

  const run = async (extra: Partial<BuildOptions> = {}) => {
    const events: ProgressEvent[] = [];
    const res = await build(ts.store, { context: ctx, tags: ['hello:test'], onProgress: (e) => events.push(e), ...extra });
    return { res, events };
  };

  it('builds the multi-stage hello fixture into a valid image', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const { res, events } = await run();
    assert.ok(res.steps.length >= 6, 'every RUN/COPY/WORKDIR step is reported');
    assert.ok(res.steps.every((s) => !s.cached), `a first build misses everywhere: ${JSON.stringify(res.steps)}`);
    const isolation = events.find((e) => e.type === 'vertex' && e.isolation !== undefined);
    assert.ok(isolation && isolation.type === 'vertex' && (isolation.isolation === 'runc' || isolation.isolation === 'unshare'));
    const img = await ts.store.images.resolve('hello:test');
    assert.ok(img);
    assert.equal(img.manifestDigest, res.digest);
    assert.deepEqual(img.config.config.Cmd, ['cat', '/etc/hello/out.txt']);
    assert.equal(img.config.config.User, 'app');
    assert.equal(img.config.config.WorkingDir, '/home/app');
    assert.ok(img.config.config.Env?.includes('GREETING=hello from tsbuild'));
    assert.deepEqual(img.config.config.ExposedPorts, { '8080/tcp': {} });
    assert.equal(img.config.rootfs.diff_ids.length, img.manifest.layers.length);
    // every layer: digest = sha256(blob), diffID = sha256(uncompressed tar)
    const names: string[][] = [];
    for (const [i, l] of img.manifest.layers.entries()) {
      const blob = await ts.store.content.readBlob(l.digest);
      assert.equal(`sha256:${createHash('sha256').update(blob).digest('hex')}`, l.digest);
      assert.equal(blob.length, l.size);
      const tar = l.mediaType.endsWith('gzip') ? gunzipSync(blob) : blob;
      assert.equal(`sha256:${createHash('sha256').update(tar).digest('hex')}`, img.config.rootfs.diff_ids[i]);
      names.push(tarNames(tar));
    }
    // the RUN that deletes a base file leaves a whiteout
    assert.ok(names.some((n) => n.includes('bin/.wh.wget')), `a layer holds bin/.wh.wget: ${JSON.stringify(names.slice(1))}`);
    assert.ok(names.some((n) => n.includes('etc/hello/out.txt')));
    // runtime file stubs (/etc/hosts...) and anything under /proc, /sys, /dev never end up in a layer;
    // the empty /proc, /sys and /dev directories themselves stay, exactly as BuildKit's layers have them
    for (const n of names.slice(1)) {
      assert.ok(!n.some((x) => /^(proc|sys|dev)\/.+|^etc\/(hosts|resolv\.conf|hostname)$/.test(x)), `no runtime stubs in ${JSON.stringify(n)}`);
    }
  });

  it('serves an identical rebuild from the cache, with the same digest', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const first = await run();
    const { res, events } = await run();
    assert.ok(res.steps.length > 0);
    assert.ok(res.steps.every((s) => s.cached), JSON.stringify(res.steps));
    // as BuildKit: history times are the layers' creation times, so the config, manifest and image ID stay
    assert.deepEqual(res.image.config.history, first.res.image.config.history);
    assert.equal(res.image.config.created, first.res.image.config.created);
    assert.equal(res.digest, first.res.digest);
    assert.ok(!events.some((e) => e.type === 'log'), 'nothing ran');
    // the tag already names that image: index.json is not rewritten
    const index = join(ts.store.root, 'index.json');
    const before = readFileSync(index, 'utf8');
    await run();
    assert.equal(readFileSync(index, 'utf8'), before);
  });

  it('hits the cache when a file is only touched, misses naming the file when it changes', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    await run();
    const f = join(ctx, 'message.txt');
    const later = new Date(Date.now() + 60_000);
    await utimes(f, later, later);
    const touched = await run();
    assert.ok(touched.res.steps.every((s) => s.cached), 'touch-only change is a hit');
    await writeFile(f, 'a different message\n');
    const changed = await run();
    const copy = changed.res.steps.find((s) => s.description.includes('COPY message.txt'));
    assert.ok(copy && !copy.cached);
    assert.match(copy.reason ?? '', /file message\.txt changed/);
    const runStep = changed.res.steps.find((s) => s.description.includes('RUN echo'));
    assert.ok(runStep && !runStep.cached);
    assert.equal(runStep.reason, 'parent step missed the cache');
    const out = await readFile(join(REPO_ROOT, 'fixtures', 'hello', 'message.txt'), 'utf8');
    await writeFile(f, out);
  });

  it('misses with the ARG named when a build arg changes', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const df = join(ctx, 'Dockerfile.arg');
    await writeFile(df, 'FROM busybox:local\nARG VERSION=1\nRUN echo version $VERSION > /v\n');
    await run({ dockerfile: df, buildArgs: { VERSION: '1.2' } });
    const again = await run({ dockerfile: df, buildArgs: { VERSION: '1.3' } });
    const step = again.res.steps.find((s) => s.description.includes('RUN'));
    assert.ok(step && !step.cached);
    assert.match(step.reason ?? '', /ARG VERSION 1\.2→1\.3/);
  });

  it('misses naming the instruction when its text changes', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const df = join(ctx, 'Dockerfile.instr');
    await writeFile(df, 'FROM busybox:local\nRUN echo one > /x\n');
    await run({ dockerfile: df });
    await writeFile(df, 'FROM busybox:local\nRUN echo two > /x\n');
    const again = await run({ dockerfile: df });
    assert.match(again.res.steps[0].reason ?? '', /instruction changed/);
  });

  it('reports a failing RUN with its exit code, output and Dockerfile line', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const df = join(ctx, 'Dockerfile.fail');
    await writeFile(df, 'FROM busybox:local\n\nRUN echo about to fail && exit 7\n');
    await assert.rejects(run({ dockerfile: df }), (err: Error & { exitCode?: number; lastLines?: string[]; location?: { line: number } }) => {
      assert.equal(err.name, 'ExecFailedError');
      assert.equal(err.exitCode, 7);
      assert.ok(err.lastLines?.includes('about to fail'));
      assert.equal(err.location?.line, 3);
      return true;
    });
  });

  it('runs RUN under util-linux unshare + chroot when asked (the fallback without a runtime)', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const df = join(ctx, 'Dockerfile.unshare');
    await writeFile(df, 'FROM busybox:local\nRUN echo pid=$$ > /pid && id -u > /uid\nUSER app\nRUN id -u > /tmp/app-uid\n');
    const { res, events } = await run({ dockerfile: df, isolation: 'unshare', noCache: true });
    const iso = events.filter((e) => e.type === 'vertex' && e.isolation !== undefined);
    assert.equal(iso.length, 2);
    assert.ok(iso.every((e) => e.type === 'vertex' && e.isolation === 'unshare'));
    assert.equal(res.image.manifest.layers.length, 3);
    const blob = await ts.store.content.readBlob(res.image.manifest.layers[1].digest);
    const tar = res.image.manifest.layers[1].mediaType.endsWith('gzip') ? gunzipSync(blob) : blob;
    assert.ok(tarNames(tar).includes('pid'));
    assert.match(tar.toString('latin1'), /pid=1\n/, 'the step is pid 1 of its own pid namespace');
  });

  it('runs independent stages at the same time', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    // Each stage's RUN announces itself in a shared cache mount and waits (up to 20 s)
    // until all four have: only steps that really run concurrently all see 4.
    const df = join(ctx, 'Dockerfile.par');
    const id = `par-${process.pid}-${Date.now()}`;
    const wait = 'n=0; while [ $(ls /c | wc -l) -lt 4 ] && [ $n -lt 200 ]; do sleep 0.1; n=$((n+1)); done; ls /c | wc -l';
    const stages = [1, 2, 3, 4]
      .map((i) => `FROM busybox:local AS s${i}\nRUN --mount=type=cache,id=${id},target=/c,sharing=shared touch /c/${i}; ${wait} > /seen${i}\n`)
      .join('');
    await writeFile(df, `${stages}FROM scratch\n${[1, 2, 3, 4].map((i) => `COPY --from=s${i} /seen${i} /\n`).join('')}`);
    const { res } = await run({ dockerfile: df, noCache: true, jobs: 4 });
    const seen: string[] = [];
    for (const l of res.image.manifest.layers) {
      const blob = await ts.store.content.readBlob(l.digest);
      const tar = l.mediaType.endsWith('gzip') ? gunzipSync(blob) : blob;
      const body = tarFile(tar, /^seen\d$/);
      assert.ok(body !== undefined, 'each COPY layer holds its /seenN file');
      seen.push(body.toString('utf8').trim());
    }
    assert.deepEqual(seen, ['4', '4', '4', '4'], 'every stage saw all four running at once');
  });

  it('a failing stage cancels the others cleanly: sandboxes killed, nothing left active or mounted', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const df = join(ctx, 'Dockerfile.cancel');
    await writeFile(df, 'FROM busybox:local AS slow\nRUN sleep 60 && echo done > /slow\nFROM busybox:local AS bad\nRUN sleep 0.5; exit 3\nFROM busybox:local\nCOPY --from=slow /slow /\nCOPY --from=bad /etc/passwd /\n');
    const t0 = Date.now();
    await assert.rejects(run({ dockerfile: df, noCache: true }), (err: Error & { exitCode?: number }) => err.name === 'ExecFailedError' && err.exitCode === 3);
    // the 60 s step was killed, not waited for
    assert.ok(Date.now() - t0 < 30_000, `the build took ${Date.now() - t0} ms to fail`);
    const runcList = execFileSync('runc', ['--root', join(ts.root, 'runc', 'runc'), 'list', '-q'], { encoding: 'utf8' }).trim();
    assert.equal(runcList, '', 'no runc container is left');
    const active: string[] = [];
    for await (const info of ts.store.snapshots.walk()) if (info.kind !== 'committed') active.push(info.key);
    assert.deepEqual(active, [], 'no active or view snapshot is left');
    const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.includes(` ${ts.root}/`));
    assert.deepEqual(mounts, [], 'nothing is left mounted under the store');
  });

  it('fails with the file and line when a COPY source is missing', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const df = join(ctx, 'Dockerfile.missing');
    await writeFile(df, 'FROM busybox:local\nCOPY nope.txt /\n');
    await assert.rejects(run({ dockerfile: df }), (err: Error & { location?: { line: number; file: string } }) => {
      assert.match(err.message, /nope\.txt.*not found/);
      assert.equal(err.location?.line, 2);
      assert.equal(err.location?.file, df);
      return true;
    });
  });
});
