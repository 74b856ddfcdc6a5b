/**
 * The fidelity suite: every case under fixtures/fidelity is built by the reference
 * BuildKit (dockerd 26 / BuildKit 0.13 started by ../shared/peers/setup-buildkit.sh,
 * client in TSBUILD_REF_DOCKER) and by tsbuild from the very same busybox:local layers
 * (exported from the reference with `docker save`), and the two images must agree:
 * flattened filesystem (type, mode, owner, size, content, link target; not times),
 * the config fields that matter, and the history.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadArchive, type StoredImage } from '@tsbuild/snapshotter';
import { build, type BuildOptions } from '../index.js';
import { BuildStore } from '../store.js';
import { REPO_ROOT, requireBuildPrereqs } from '../test-helpers/store.js';
import { configView, diffImages, exec, flattenImage, pool, staticServer, type CaseSpec } from './test-helpers/fidelity.js';

const FIXTURES = join(REPO_ROOT, 'fixtures', 'fidelity');
const REF = process.env.TSBUILD_REF_DOCKER;
const SOCK = 'unix:///var/run/docker26.sock';
const ONLY = process.env.FIDELITY_ONLY?.split(',');
/** image names on the reference dockerd, unique per run (CI and developers may share it) */
const TAG = (name: string): string => `fidelity-${process.pid}/${name}`;

interface Outcome {
  image?: StoredImage;
  error?: string;
  seconds: number;
}

const cases = existsSync(FIXTURES)
  ? (await readdir(FIXTURES, { withFileTypes: true })).filter((d) => d.isDirectory() && (!ONLY || ONLY.includes(d.name))).map((d) => d.name).sort()
  : [];

describe('fidelity: tsbuild vs BuildKit 0.13', { concurrency: false }, () => {
  let work = '';
  let store: BuildStore | undefined;
  let active = false;
  let sshAgent: { sock: string; pid: number } | undefined;
  let www: Awaited<ReturnType<typeof staticServer>> | undefined;
  const refResults = new Map<string, Promise<Outcome>>();
  const ourResults = new Map<string, Promise<Outcome>>();
  const dirs = new Map<string, string>();
  const specs = new Map<string, CaseSpec>();
  const t0 = Date.now();

  const refEnv = (spec: CaseSpec): NodeJS.ProcessEnv => ({ ...process.env, DOCKER_HOST: SOCK, ...(spec.env ?? {}), ...(sshAgent ? { SSH_AUTH_SOCK: sshAgent.sock } : {}) });

  // a suite hook has no skip(): record why, and every case skips with that reason
  let skipReason = 'reference BuildKit not running';
  before(async () => {
    const t = {
      skip(msg: string): void {
        skipReason = msg;
      },
    };
    if (!REF) {
      if (process.env.CI === 'true') throw new Error('TSBUILD_REF_DOCKER is not set: .ci/run must start the reference BuildKit (bash ../shared/peers/setup-buildkit.sh) and export its client path');
      t.skip('TSBUILD_REF_DOCKER is not set: run `export TSBUILD_REF_DOCKER=$(bash ../shared/peers/setup-buildkit.sh | tail -1)` to run the fidelity suite');
      return;
    }
    if (!requireBuildPrereqs(t)) return;
    const info = spawnSync(REF, ['info', '--format', '{{.ServerVersion}}'], { env: { ...process.env, DOCKER_HOST: SOCK }, encoding: 'utf8' });
    if (info.status !== 0) throw new Error(`the reference dockerd on ${SOCK} does not answer (${REF} info: ${info.stderr.trim()}); start it with bash ../shared/peers/setup-buildkit.sh`);
    active = true;
    work = await mkdtemp(join(tmpdir(), 'tsbuild-fidelity-'));
    store = await BuildStore.open(join(work, 'store'));
    // the very same base layers on both sides
    const saved = join(work, 'busybox.tar');
    const s = await exec(REF, ['save', '-o', saved, 'busybox:local'], { env: { ...process.env, DOCKER_HOST: SOCK } });
    if (s.code !== 0) throw new Error(`docker save busybox:local failed: ${s.stderr}`);
    await loadArchive(store.content, store.images, saved);
    if (!(await store.images.resolve('busybox:local'))) throw new Error('busybox:local did not load from the reference');
    www = await staticServer(join(work, 'cases'));
    const agentDir = await mkdtemp(join(tmpdir(), 'tsbuild-ssh-'));
    const sock = join(agentDir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    sshAgent = { sock, pid: agent.pid ?? 0 };
    for (let i = 0; i < 50 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));

    // prepare every case in a scratch copy (prepare.sh makes archives, repos, odd modes)
    for (const name of cases) {
      const dir = join(work, 'cases', name);
      await mkdir(dir, { recursive: true });
      await cp(join(FIXTURES, name), dir, { recursive: true });
      const specPath = join(dir, 'case.json');
      const spec: CaseSpec = existsSync(specPath) ? (JSON.parse(await readFile(specPath, 'utf8')) as CaseSpec) : {};
      if (existsSync(join(dir, 'prepare.sh'))) {
        const r = await exec('bash', ['prepare.sh'], { cwd: dir });
        if (r.code !== 0) throw new Error(`${name}/prepare.sh failed: ${r.stderr}`);
      }
      if (spec.http) spec.buildArgs = { ...(spec.buildArgs ?? {}), BASE: `${www.url}/${name}/www` };
      dirs.set(name, dir);
      specs.set(name, spec);
    }

    // BuildKit side: three builds at a time, each `docker save`d into our store under ref/<case>
    const refs = pool(cases, 3, async (name): Promise<Outcome> => {
      const dir = dirs.get(name)!;
      const spec = specs.get(name)!;
      const start = Date.now();
      const args = ['buildx', 'build', '--network', 'host', '--load', '-t', TAG(name), '-f', join(dir, spec.dockerfile ?? 'Dockerfile')];
      for (const [k, v] of Object.entries(spec.buildArgs ?? {})) args.push('--build-arg', `${k}=${v}`);
      if (spec.target) args.push('--target', spec.target);
      for (const sec of spec.secrets ?? []) args.push('--secret', sec.src !== undefined ? `id=${sec.id},src=${join(dir, sec.src)}` : `id=${sec.id},env=${sec.env}`);
      for (const [k, v] of Object.entries(spec.buildContexts ?? {})) args.push('--build-context', `${k}=${v.startsWith('dir:') ? join(dir, v.slice(4)) : v}`);
      if (spec.ssh) args.push('--ssh', `default=${sshAgent!.sock}`);
      args.push(join(dir, spec.context ?? '.'));
      const r = await exec(REF, args, { env: refEnv(spec) });
      if (r.code !== 0) return { error: r.stderr, seconds: (Date.now() - start) / 1000 };
      const tar = join(work, `ref-${name}.tar`);
      const sv = await exec(REF, ['save', '-o', tar, TAG(name)], { env: refEnv(spec) });
      if (sv.code !== 0) throw new Error(`docker save ${TAG(name)}: ${sv.stderr}`);
      const loaded = await loadArchive(store!.content, store!.images, tar);
      await rm(tar, { force: true });
      return { image: loaded[0].image, seconds: (Date.now() - start) / 1000 };
    });
    cases.forEach((n, i) => refResults.set(n, refs[i]));
    // tsbuild side: two builds at a time in one store
    const ours = pool(cases, 2, async (name): Promise<Outcome> => {
      const dir = dirs.get(name)!;
      const spec = specs.get(name)!;
      const start = Date.now();
      const saved: Record<string, string | undefined> = {};
      const opts: BuildOptions = {
        context: join(dir, spec.context ?? '.'),
        dockerfile: join(dir, spec.dockerfile ?? 'Dockerfile'),
        network: 'host',
        ...(spec.buildArgs ? { buildArgs: spec.buildArgs } : {}),
        ...(spec.target ? { target: spec.target } : {}),
        ...(spec.secrets ? { secrets: spec.secrets.map((x) => (x.src !== undefined ? { id: x.id, src: join(dir, x.src) } : { id: x.id, env: x.env! })) } : {}),
        ...(spec.buildContexts ? { buildContexts: Object.fromEntries(Object.entries(spec.buildContexts).map(([k, v]) => [k, v.startsWith('dir:') ? join(dir, v.slice(4)) : v])) } : {}),
        ...(spec.ssh ? { ssh: [{ id: 'default', paths: [sshAgent!.sock] }] } : {}),
      };
      for (const [k, v] of Object.entries(spec.env ?? {})) {
        saved[k] = process.env[k];
        process.env[k] = v;
      }
      try {
        const res = await build(store!, opts);
        return { image: res.image, seconds: (Date.now() - start) / 1000 };
      } catch (err) {
        return { error: err instanceof Error ? `${err.message}${'tail' in err ? `\n${String((err as { tail: unknown }).tail)}` : ''}` : String(err), seconds: (Date.now() - start) / 1000 };
      }
    });
    cases.forEach((n, i) => ourResults.set(n, ours[i]));
  });

  after(async () => {
    if (!active) return;
    await Promise.allSettled([...refResults.values(), ...ourResults.values()]);
    console.log(`fidelity: ${cases.length} cases in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    www?.server.close();
    if (sshAgent?.pid) process.kill(sshAgent.pid);
    await store?.close();
    spawnSync('sh', ['-c', `grep -o " ${work}[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l`], { stdio: 'ignore' });
    await rm(work, { recursive: true, force: true });
    spawnSync(REF!, ['image', 'rm', '-f', ...cases.map((c) => TAG(c))], { env: { ...process.env, DOCKER_HOST: SOCK }, stdio: 'ignore' });
  });

  it('has at least 30 cases', () => {
    if (!ONLY) assert.ok(cases.length >= 30, `expected at least 30 cases in fixtures/fidelity, found ${cases.length}`);
  });

  for (const name of cases) {
    it(name, { timeout: 240_000 }, async (t) => {
      if (!active) {
        t.skip(skipReason);
        return;
      }
      const spec = specs.get(name)!;
      const [ref, ours] = await Promise.all([refResults.get(name)!, ourResults.get(name)!]);
      t.diagnostic(`BuildKit ${ref.seconds.toFixed(1)} s, tsbuild ${ours.seconds.toFixed(1)} s`);
      if (spec.error !== undefined) {
        const re = new RegExp(spec.error);
        assert.ok(ref.error !== undefined, `BuildKit was expected to fail (${spec.error}) but built`);
        assert.match(ref.error, re, 'BuildKit failed differently than the case expects');
        assert.ok(ours.error !== undefined, `tsbuild was expected to fail like BuildKit:\n${ref.error.split('\n').slice(-8).join('\n')}`);
        assert.match(ours.error, re, `tsbuild failed differently; BuildKit said:\n${ref.error.split('\n').slice(-8).join('\n')}`);
        return;
      }
      assert.ok(ref.image, `BuildKit failed to build the case:\n${ref.error ?? ''}`);
      assert.ok(ours.image, `tsbuild failed where BuildKit built:\n${ours.error ?? ''}`);
      const [rfs, ofs] = await Promise.all([flattenImage(store!, ref.image, work), flattenImage(store!, ours.image, work)]);
      const diff = diffImages({ fs: rfs, config: configView(ref.image) }, { fs: ofs, config: configView(ours.image) });
      assert.deepEqual(diff, [], `images differ (${diff.length}):\n${diff.join('\n')}`);
    });
  }
});
