// noop-rebuild: a rebuild of `FROM busybox:local / COPY . /ctx/ / RUN ...` with nothing changed,
// over a context of 100,000 × BENCH_SCALE small files (100 directories). Each build opens the
// store afresh, as a new `tsbuild` process would, so the context-hash memo comes from SQLite.
// Prints the cold build, the no-op rebuild and, when the reference BuildKit is running
// (TSBUILD_REF_DOCKER, see ../shared/peers/setup-buildkit.sh), BuildKit's no-op rebuild of the
// same context; ratio = tsbuild no-op / BuildKit no-op (else tsbuild no-op / tsbuild cold).
// Target: the no-op rebuild well under a second. Needs root (RUN and overlay snapshots).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchDir, fmt, report, SCALE } from './lib/common.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = join(here, '..');
const build = spawnSync('npx', ['tsc', '-b', 'packages/solver'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
const { BuildStore, build: runBuild, importRootfs } = await import('@tsbuild/solver');

if (process.getuid?.() !== 0) {
  console.log('noop-rebuild: skipped: needs root (RUN steps and overlay snapshots)');
  report({ bench: 'noop-rebuild', skipped: 'needs root' });
  process.exit(0);
}
const N = Math.max(1000, Math.round(100_000 * SCALE));
const base = await benchDir();
const ctx = join(base, `noop-ctx-${N}`);
const storeRoot = join(base, `noop-store-${N}`);
await rm(storeRoot, { recursive: true, force: true });

if (!existsSync(join(ctx, 'Dockerfile'))) {
  await rm(ctx, { recursive: true, force: true });
  const perDir = Math.ceil(N / 100);
  for (let d = 0; d < 100; d++) {
    const dir = join(ctx, `d${String(d).padStart(3, '0')}`);
    await mkdir(dir, { recursive: true });
    const writes = [];
    for (let f = d * perDir; f < Math.min(N, (d + 1) * perDir); f++) writes.push(writeFile(join(dir, `f${f}.txt`), `file ${f}\n`));
    await Promise.all(writes);
  }
  await writeFile(join(ctx, 'Dockerfile'), 'FROM busybox:local\nCOPY . /ctx/\nRUN ls /ctx | wc -l > /count\n');
}
console.log(`noop-rebuild: context of ${N} files in ${ctx}`);

// the store with busybox:local
{
  const store = await BuildStore.open(storeRoot);
  const rootfs = join(base, 'noop-busybox-rootfs');
  await rm(rootfs, { recursive: true, force: true });
  spawnSync('bash', [join(root, 'scripts', 'make-busybox-rootfs.sh'), rootfs], { stdio: 'inherit' });
  await importRootfs(store, rootfs, { tags: ['busybox:local'], config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] }, sourceDateEpoch: 0 });
  await rm(rootfs, { recursive: true, force: true });
  await store.close();
}

async function timedBuild() {
  const t0 = performance.now();
  const store = await BuildStore.open(storeRoot);
  try {
    const res = await runBuild(store, { context: ctx, tags: ['noop:bench'] });
    return { ms: performance.now() - t0, cached: res.steps.filter((s) => s.cached).length, steps: res.steps.length };
  } finally {
    await store.close();
  }
}

const cold = await timedBuild();
console.log(`tsbuild cold build: ${fmt(cold.ms / 1000)} s`);
const noops = [];
for (let i = 0; i < 3; i++) {
  const r = await timedBuild();
  if (r.cached !== r.steps) console.log(`  warning: rebuild ${i + 1} had ${r.steps - r.cached} uncached steps`);
  noops.push(r.ms);
}
const noop = Math.min(...noops);
console.log(`tsbuild no-op rebuild: ${fmt(noop)} ms (best of ${noops.map((x) => fmt(x, 0)).join(', ')})`);

let refNoop;
const REF = process.env.TSBUILD_REF_DOCKER;
if (REF) {
  const env = { ...process.env, DOCKER_HOST: 'unix:///var/run/docker26.sock' };
  const args = ['buildx', 'build', '--network', 'host', '-q', '--load', '-t', 'noop:bench', ctx];
  const c = spawnSync(REF, args, { env, encoding: 'utf8' });
  if (c.status !== 0) console.log(`BuildKit cold build failed: ${c.stderr.split('\n').slice(-3).join(' ')}`);
  else {
    const times = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      spawnSync(REF, args, { env, encoding: 'utf8' });
      times.push(performance.now() - t0);
    }
    refNoop = Math.min(...times);
    console.log(`BuildKit 0.13 no-op rebuild: ${fmt(refNoop)} ms (best of ${times.map((x) => fmt(x, 0)).join(', ')})`);
  }
}
await rm(storeRoot, { recursive: true, force: true });
report({
  bench: 'noop-rebuild',
  files: N,
  cold_s: fmt(cold.ms / 1000),
  noop_ms: fmt(noop),
  ...(refNoop !== undefined ? { buildkit_noop_ms: fmt(refNoop), ratio: fmt(noop / refNoop), against: 'buildkit' } : { ratio: fmt(noop / cold.ms, 4), against: 'own cold build' }),
  target_ms: 1000,
});
