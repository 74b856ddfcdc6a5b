#!/usr/bin/env node
// peers: tsbuild versus BuildKit on the six scenarios of issue 9 (the ones
// ../shared/peerbench/run.sh times), in the same run on the same machine. For each
// scenario it prints the runs, then one JSON line
//   {"bench":"peers-S1","ratio":<tsbuild median / BuildKit median>,"target":1,...}
// Runs of the two builders alternate (A B A B ...) so that load from elsewhere on the
// machine falls on both. It never asserts on time.
//
// Env: PEERS_SCENARIOS ["S1 S2 S3 S4 S6"; S4 includes S4-save], PEERS_RUNS [5] (S1 S2
// S3 S6), PEERS_RUNS_BIG [3] (S4), BENCH_SCALE [1] (S3: 20,000 files × scale; S4:
// 1024 MiB and 50,000 files × scale), PEERS_BASELINE [auto] (auto | buildkit | docker |
// none), PEERS_TSBUILD_FLAGS (extra build flags, e.g. "-o type=image,compression=gzip"),
// PEERS_GEN_SOURCE (gen.c elsewhere than ../shared/peerbench),
// BENCH_DIR (data dir; default a temp dir), BENCH_KEEP=1 keeps it.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dockerBaseline, run, timed, tsbuildBuilder } from './lib/peers-builders.mjs';
import { buildGen, genS1, genS3, genS4, genS6, touchS3 } from './lib/peers-scenarios.mjs';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const SCALE = Number(process.env.BENCH_SCALE ?? '1');
const RUNS = Number(process.env.PEERS_RUNS ?? '5');
const RUNS_BIG = Number(process.env.PEERS_RUNS_BIG ?? '3');
const SCENARIOS = (process.env.PEERS_SCENARIOS ?? 'S1 S2 S3 S4 S6').split(/[\s,]+/).filter(Boolean);
const S3_FILES = Math.max(100, Math.round(20_000 * SCALE));
const S4_MIB = Math.max(4, Math.round(1024 * SCALE));
const S4_FILES = Math.max(100, Math.round(50_000 * SCALE));
const TARGETS = { S1: 1.0, S2: 1.5, S3: 0.5, S4: 0.6, 'S4-save': 0.5, S6: 1.0 };
const RSS_TARGET_MB = 300;

const say = (s) => process.stdout.write(`${s}\n`);
const median = (xs) => {
  const a = [...xs].sort((x, y) => x - y);
  if (a.length === 0) return NaN;
  return a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
};
const r3 = (x) => (Number.isFinite(x) ? Number(x.toFixed(3)) : null);
const load = () => Number(loadavg()[0].toFixed(2));

const unknown = SCENARIOS.filter((s) => !['S1', 'S2', 'S3', 'S4', 'S6'].includes(s));
if (unknown.length) {
  console.error(`unknown scenario ${unknown.join(', ')}; known: S1 S2 S3 S4 S6 (S4 includes S4-save)`);
  process.exit(2);
}

const tsc = spawnSync('npx', ['tsc', '-b', 'packages/cli'], { cwd: REPO_ROOT, stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
// the CLI as `npm run build` leaves it: bundled (scripts/bundle-cli.mjs)
const bundle = spawnSync(process.execPath, ['scripts/bundle-cli.mjs'], { cwd: REPO_ROOT, stdio: 'inherit' });
if (bundle.status !== 0) process.exit(bundle.status ?? 1);

const own = process.env.BENCH_DIR === undefined;
const base = process.env.BENCH_DIR ? join(process.env.BENCH_DIR, 'peers') : await mkdtemp(join(tmpdir(), 'tsbuild-peers-'));
await mkdir(base, { recursive: true });
const logs = join(base, 'logs');
await mkdir(logs, { recursive: true });

say(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}, ${new Date().toISOString()}`);
say(`scenarios: ${SCENARIOS.join(' ')} | runs ${RUNS} (S4: ${RUNS_BIG}) | S3 ${S3_FILES} files | S4 ${S4_MIB} MiB in ${S4_FILES} files | data ${base}`);

const which = process.env.PEERS_BASELINE ?? 'auto';
const baseline = which === 'none' ? undefined : dockerBaseline(which, say);
say(baseline ? `baseline: ${baseline.label}` : 'baseline: none (tsbuild figures only; ratios are null)');
const extraFlags = (process.env.PEERS_TSBUILD_FLAGS ?? '').split(/\s+/).filter(Boolean);
const ours = await tsbuildBuilder(base, { baseArchive: baseline ? await baseline.baseArchive(base) : undefined, extraFlags });
const builders = baseline ? [ours, baseline] : [ours];

let failures = 0;

/**
 * Times `n` runs of each builder, alternating. `prep(b, i)` runs untimed before each run;
 * `argv(b)` is the timed command; `check(b, log)` may return a warning.
 */
async function measure(scenario, n, { prep, argv, check }) {
  const runs = new Map(builders.map((b) => [b.name, { s: [], rss: [], peak: [], failed: 0, warnings: [] }]));
  for (let i = 0; i < n; i++) {
    const order = i % 2 === 0 ? builders : [...builders].reverse();
    for (const b of order) {
      if (prep) await prep(b, i);
      spawnSync('sync');
      const log = join(logs, `${scenario}-${b.name}-${i + 1}.log`);
      b.peak?.reset();
      const t = await timed(argv(b), { log, env: b.env });
      const rec = runs.get(b.name);
      if (t.code !== 0) {
        rec.failed++;
        failures++;
        say(`  ${scenario} ${b.name} run ${i + 1} FAILED (exit ${t.code}); log ${log}:`);
        for (const l of readFileSync(log, 'utf8').trim().split('\n').slice(-8)) say(`      ${l}`);
        continue;
      }
      rec.s.push(t.s);
      if (t.maxRssMB !== undefined) rec.rss.push(t.maxRssMB);
      const p = b.peak?.readMB();
      if (p !== undefined) rec.peak.push(p);
      const w = check?.(b, log, i);
      if (w) rec.warnings.push(w);
      say(`  ${scenario} ${b.name.padEnd(8)} run ${i + 1}: ${t.s.toFixed(3)} s${t.maxRssMB !== undefined ? `, maxRSS ${t.maxRssMB.toFixed(0)} MB` : ''}${p !== undefined ? `, daemon peak ${p.toFixed(0)} MB` : ''}${w ? ` WARNING ${w}` : ''}`);
    }
  }
  return runs;
}

function report(scenario, runs, extra = {}) {
  const o = runs.get('tsbuild');
  const b = baseline ? runs.get(baseline.name) : undefined;
  const om = median(o.s);
  const bm = b ? median(b.s) : NaN;
  const line = {
    bench: `peers-${scenario}`,
    ratio: r3(om / bm),
    target: TARGETS[scenario],
    oursS: r3(om),
    baselineS: r3(bm),
    baseline: baseline?.name ?? null,
    runs: o.s.length,
    oursRunsS: o.s.map(r3),
    baselineRunsS: b ? b.s.map(r3) : [],
    oursMaxRssMB: o.rss.length ? Math.round(Math.max(...o.rss)) : null,
    ...(b && b.peak.length ? { baselineDaemonPeakMB: Math.round(Math.max(...b.peak)) } : {}),
    load: extra.load,
    ...extra,
  };
  const warnings = [...o.warnings, ...(b?.warnings ?? [])];
  if (warnings.length) line.warnings = [...new Set(warnings)];
  if (o.failed || b?.failed) line.failedRuns = { tsbuild: o.failed, ...(b ? { [baseline.name]: b.failed } : {}) };
  say(`${scenario}: tsbuild ${om.toFixed(3)} s, ${baseline ? `${baseline.name} ${bm.toFixed(3)} s, ratio ${(om / bm).toFixed(3)} (target ≤ ${TARGETS[scenario]})` : 'no baseline'}`);
  say(JSON.stringify(line));
}

const scen = (name) => join(base, 'scen', name);
const df = (name) => join(scen(name), 'Dockerfile');
const logHas = (log, text) => readFileSync(log, 'utf8').includes(text);

async function S1() {
  await genS1(scen('s1'));
  const l0 = load();
  const runs = await measure('S1', RUNS, {
    prep: (b) => b.cold('pb-s1'),
    argv: (b) => b.buildArgv('pb-s1', df('s1'), scen('s1')),
  });
  report('S1', runs, { load: [l0, load()] });
}

async function S2() {
  await genS1(scen('s1'));
  for (const b of builders) run(b.buildArgv('pb-s1', df('s1'), scen('s1')), { env: b.env });
  const l0 = load();
  const runs = await measure('S2', RUNS, { argv: (b) => b.buildArgv('pb-s1', df('s1'), scen('s1')) });
  report('S2', runs, { load: [l0, load()] });
}

async function S3() {
  say(`S3: generating a ${S3_FILES}-file context`);
  await genS3(scen('s3'), S3_FILES);
  for (const b of builders) {
    const t0 = performance.now();
    run(b.buildArgv('pb-s3', df('s3'), scen('s3')), { env: b.env });
    say(`  S3 first (untimed) build ${b.name}: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  }
  let expect = '';
  let counter = 0;
  const l0 = load();
  const runs = await measure('S3', RUNS, {
    prep: async () => {
      expect = await touchS3(scen('s3'), ++counter);
    },
    argv: (b) => b.buildArgv('pb-s3', df('s3'), scen('s3')),
    check: (_b, log) => (logHas(log, expect) ? undefined : 'changed file content not seen in the build log'),
  });
  report('S3', runs, { load: [l0, load()], contextFiles: S3_FILES });
}

async function S4() {
  const gen = buildGen(join(base, 'gen'));
  if (!gen.path) {
    say(`S4: skipped: ${gen.reason}`);
    say(JSON.stringify({ bench: 'peers-S4', ratio: null, target: TARGETS.S4, skipped: gen.reason }));
    return;
  }
  await genS4(scen('s4'), gen.path, S4_MIB, S4_FILES);
  const saveTar = join(base, 's4-save.tar');
  let l0 = load();
  const build = await measure('S4', RUNS_BIG, {
    prep: async (b) => {
      await b.cold('pb-s4');
      await rm(saveTar, { force: true });
    },
    argv: (b) => b.buildArgv('pb-s4', df('s4'), scen('s4')),
  });
  const first = readFileSync(join(logs, 'S4-tsbuild-1.log'), 'utf8');
  const m = /gen: (\d+) files, (\d+) bytes/.exec(first);
  const treeBytes = m ? Number(m[2]) : undefined;
  const o = build.get('tsbuild');
  report('S4', build, {
    load: [l0, load()],
    treeMB: treeBytes ? Math.round(treeBytes / 1e6) : null,
    oursMBps: treeBytes ? Math.round(treeBytes / 1e6 / median(o.s)) : null,
    rssTargetMB: RSS_TARGET_MB,
    rssOk: o.rss.length ? Math.max(...o.rss) < RSS_TARGET_MB : null,
  });
  l0 = load();
  const sizes = {};
  const save = await measure('S4-save', RUNS_BIG, {
    prep: async () => {
      await rm(saveTar, { force: true });
    },
    argv: (b) => b.saveArgv('pb-s4', saveTar),
    check: (b) => {
      sizes[b.name] = spawnSync('stat', ['-c', '%s', saveTar], { encoding: 'utf8' }).stdout.trim();
      return undefined;
    },
  });
  report('S4-save', save, { load: [l0, load()], oursTarMB: Math.round(Number(sizes.tsbuild) / 1e6), ...(baseline ? { baselineTarMB: Math.round(Number(sizes[baseline.name]) / 1e6) } : {}) });
  await rm(saveTar, { force: true });
  for (const b of builders) await b.cold('pb-s4');
}

async function S6() {
  await genS6(scen('s6'));
  const l0 = load();
  const runs = await measure('S6', RUNS, {
    prep: (b) => b.cold('pb-s6'),
    argv: (b) => b.buildArgv('pb-s6', df('s6'), scen('s6')),
  });
  report('S6', runs, { load: [l0, load()] });
}

const table = { S1, S2, S3, S4, S6 };
try {
  for (const s of ['S1', 'S2', 'S3', 'S4', 'S6'].filter((x) => SCENARIOS.includes(x))) {
    say(`== ${s}`);
    await table[s]();
  }
} finally {
  if (baseline) for (const t of ['pb-s1', 'pb-s3', 'pb-s4', 'pb-s6']) await baseline.cold(t);
  if (own && process.env.BENCH_KEEP !== '1') {
    await ours.cleanup();
    await rm(base, { recursive: true, force: true });
  }
}
process.exit(failures > 0 ? 1 : 0);
