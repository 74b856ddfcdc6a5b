import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { docker, dockerAvailable, hasCommand, REPO_ROOT, requirePrereq, requireRoot, storeWithBusybox, tsbuild } from './test/cli-helpers.js';

describe('tsbuild CLI: usage and parse errors', () => {
  it('prints help and exits 0', async () => {
    const r = await tsbuild('/nonexistent-root', ['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: tsbuild/);
    assert.match(r.stdout, /build \[options\] \[context\]/);
  });

  it('rejects an unknown flag with a one-line error and exit code 2', async () => {
    const r = await tsbuild('/nonexistent-root', ['build', '--frobnicate', '.']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option '--frobnicate'/);
  });

  it('rejects an invalid --output with exit code 2', async () => {
    const r = await tsbuild('/nonexistent-root', ['build', '-o', 'type=bogus', '.']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown output type "bogus"/);
  });

  it('reports a Dockerfile syntax error with file:line and exits 1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tsbuild-bad-'));
    try {
      await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\nFROBNICATE now\n');
      const r = await tsbuild(join(dir, 'store'), ['parse', join(dir, 'Dockerfile')]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /Dockerfile:2/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('parse prints BuildKit’s AST dump', async () => {
    const r = await tsbuild('/nonexistent-root', ['parse', join(REPO_ROOT, 'fixtures', 'hello', 'Dockerfile')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\(arg "BASE=busybox:local"\)$/m);
    assert.match(r.stdout, /^\(cmd "cat" "\/etc\/hello\/out.txt"\)$/m);
  });
});

describe('tsbuild CLI: build, save, load, run under docker', { concurrency: false }, () => {
  let root = '';
  let cleanup = async (): Promise<void> => {};
  let work = '';
  let ok = false;

  before(async (t) => {
    ok = requireRoot(t) && requirePrereq(t, hasCommand('busybox'), 'busybox', 'busybox-static') && requirePrereq(t, hasCommand('runc'), 'runc', 'runc');
    if (!ok) return;
    ({ root, cleanup } = await storeWithBusybox());
    work = await mkdtemp(join(tmpdir(), 'tsbuild-out-'));
  });
  after(async () => {
    if (!ok) return;
    await cleanup();
    await rm(work, { recursive: true, force: true });
    docker(['rmi', '-f', 'tsbuild-e2e/hello:latest']);
  });

  it('builds fixtures/hello with plain progress, then serves the rebuild from the cache', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const first = await tsbuild(root, ['-t', 'tsbuild-e2e/hello', '--progress=plain', 'fixtures/hello']);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /^#\d+ \[build 4\/5\] RUN echo "\$GREETING" > out.txt && cat message.txt >> out.txt$/m);
    assert.match(first.stderr, /^#\d+ isolation: (runc|unshare)$/m);
    assert.match(first.stderr, /^#\d+ DONE \d+\.\ds$/m);
    assert.match(first.stderr, /^#\d+ MISS no earlier build of this step in the cache$/m);
    const second = await tsbuild(root, ['-t', 'tsbuild-e2e/hello', '--progress=plain', 'fixtures/hello']);
    assert.equal(second.code, 0, second.stderr);
    const steps = second.stderr.match(/^#\d+ \[[^\]]+\] (FROM|RUN|COPY|WORKDIR).*$/gm) ?? [];
    assert.ok(steps.length >= 6, second.stderr);
    const cachedCount = (second.stderr.match(/^#\d+ CACHED$/gm) ?? []).length;
    assert.equal(cachedCount, steps.length, second.stderr);
    assert.doesNotMatch(second.stderr, /MISS/);
  });

  it('lists the image with its digest and size', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const r = await tsbuild(root, ['images']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^REPOSITORY\s+TAG\s+DIGEST\s+CREATED\s+SIZE$/m);
    assert.match(r.stdout, /^tsbuild-e2e\/hello\s+latest\s+[0-9a-f]{12}\s+.+\s+[\d.]+[kM]?B$/m);
    const j = JSON.parse((await tsbuild(root, ['images', '--format', 'json'])).stdout) as { familiar: string; digest: string }[];
    assert.ok(j.some((i) => i.familiar === 'tsbuild-e2e/hello:latest' && /^sha256:[0-9a-f]{64}$/.test(i.digest)));
  });

  it('saves a docker-archive that docker loads and runs, honouring the whiteout', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    if (!requirePrereq(t, dockerAvailable(), 'a running dockerd (scripts/start-services.sh)', 'docker.io')) return;
    const tar = join(work, 'hello-docker.tar');
    const s = await tsbuild(root, ['save', 'tsbuild-e2e/hello', '-o', tar]);
    assert.equal(s.code, 0, s.stderr);
    const load = docker(['load', '-i', tar]);
    assert.equal(load.code, 0, load.stderr);
    const run = docker(['run', '--rm', '--network', 'host', 'tsbuild-e2e/hello']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'hello from tsbuild\nbuilt by a TypeScript container builder\n');
    const gone = docker(['run', '--rm', '--network', 'host', 'tsbuild-e2e/hello', 'ls', '/bin/wget']);
    assert.notEqual(gone.code, 0, 'the file deleted by RUN rm is gone under docker');
    const who = docker(['run', '--rm', '--network', 'host', 'tsbuild-e2e/hello', 'id', '-u']);
    assert.equal(who.stdout.trim(), '1000');
  });

  it('writes an OCI archive that skopeo and umoci accept, and a docker archive via --output', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    if (!requirePrereq(t, hasCommand('skopeo'), 'skopeo', 'skopeo') || !requirePrereq(t, hasCommand('umoci'), 'umoci', 'umoci')) return;
    const oci = join(work, 'hello-oci.tar');
    const dtar = join(work, 'hello-docker2.tar');
    const r = await tsbuild(root, ['build', '-t', 'tsbuild-e2e/hello', '--progress=quiet', '--output', `type=oci,dest=${oci}`, '--output', `type=docker,dest=${dtar}`, 'fixtures/hello']);
    assert.equal(r.code, 0, r.stderr);
    const insp = spawnSync('skopeo', ['inspect', `oci-archive:${oci}`], { encoding: 'utf8' });
    assert.equal(insp.status, 0, insp.stderr);
    const info = JSON.parse(insp.stdout) as { Layers: string[]; Architecture: string };
    assert.ok(info.Layers.length >= 3);
    const layout = join(work, 'layout');
    spawnSync('mkdir', ['-p', layout]);
    assert.equal(spawnSync('tar', ['-xf', oci, '-C', layout]).status, 0);
    const idx = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: { annotations?: Record<string, string> }[] };
    const tag = idx.manifests[0].annotations?.['org.opencontainers.image.ref.name'];
    assert.ok(tag);
    const stat = spawnSync('umoci', ['stat', '--image', `${layout}:${tag}`], { encoding: 'utf8' });
    assert.equal(stat.status, 0, stat.stderr);
    const unpack = spawnSync('umoci', ['unpack', '--image', `${layout}:${tag}`, join(work, 'bundle')], { encoding: 'utf8' });
    assert.equal(unpack.status, 0, unpack.stderr);
    assert.equal(await readFile(join(work, 'bundle', 'rootfs', 'etc', 'hello', 'out.txt'), 'utf8'), 'hello from tsbuild\nbuilt by a TypeScript container builder\n');
    if (dockerAvailable()) {
      const load = docker(['load', '-i', dtar]);
      assert.equal(load.code, 0, load.stderr);
    }
  });

  it('loads an archive into a clean store and builds FROM it', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const tar = join(work, 'hello-docker.tar');
    await tsbuild(root, ['save', 'tsbuild-e2e/hello', '-o', tar]);
    const other = join(work, 'store2');
    const l = await tsbuild(other, ['load', '-i', tar]);
    assert.equal(l.code, 0, l.stderr);
    assert.match(l.stdout, /Loaded image: .*hello/);
    const ctx = join(work, 'ctx2');
    spawnSync('mkdir', ['-p', ctx]);
    await writeFile(join(ctx, 'Dockerfile'), 'FROM tsbuild-e2e/hello\nUSER root\nRUN cat /etc/hello/out.txt > /copy.txt\n');
    const b = await tsbuild(other, ['build', '-t', 'derived', '--progress=plain', ctx]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, /#\d+ [\d.]+ |DONE/);
    spawnSync('sh', ['-c', `grep -o " ${other}[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l`]);
  });

  it('fails a build whose RUN exits non-zero with exit code 1, the step and its output', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const ctx = join(work, 'ctx-fail');
    spawnSync('mkdir', ['-p', ctx]);
    await writeFile(join(ctx, 'Dockerfile'), 'FROM busybox:local\nRUN echo going down; exit 3\n');
    const r = await tsbuild(root, ['build', '--progress=plain', ctx]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /RUN failed/);
    assert.match(r.stderr, /exit code: 3/);
    assert.match(r.stderr, / > going down/);
    assert.match(r.stderr, /Dockerfile:2/);
  });
});


