// Shared helpers of the benchmarks: env knobs, the bench data dir, timing, child runs.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTree } from './gen.mjs';

export const SCALE = Number(process.env.BENCH_SCALE ?? '1');
export const NPROC = availableParallelism();

/** The directory benchmarks keep their data in ($BENCH_DIR, else a fixed dir under the OS temp dir). */
export async function benchDir() {
  const dir = process.env.BENCH_DIR ?? join(tmpdir(), 'tsbuild-bench');
  await mkdir(dir, { recursive: true });
  return dir;
}

/** The compiled library, as users import it. */
export async function lib() {
  return import('@tsbuild/snapshotter');
}

export const mb = (bytes) => bytes / 1048576;
export const fmt = (x, d = 2) => Number(x.toFixed(d));

/** Prints the one JSON line a bench ends with. */
export function report(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/**
 * The export tree (about 1 GiB × BENCH_SCALE in 50,000 × BENCH_SCALE files, half random,
 * half text), generated once per BENCH_DIR and parameter set. When the library exports
 * openSnapshotter, the tree is written into an active snapshot with no parent (so
 * exportLayer can diff it); otherwise into a plain directory.
 * Returns { dir, files, bytes, snapshotter?, key?, snapRoot? }.
 */
export async function ensureTree() {
  const base = await benchDir();
  const files = Math.max(10, Math.round(50_000 * SCALE));
  const bytes = Math.max(1 << 20, Math.round(1024 * 1048576 * SCALE));
  const params = { files, bytes, seed: 1, v: 1 };
  const L = await lib();
  const marker = join(base, 'tree.json');
  let snapshotter;
  let key;
  let dir;
  const snapRoot = join(base, 'snaps');
  let committed = false;
  if (typeof L.openSnapshotter === 'function') {
    // The tree lives in a COMMITTED snapshot with no parent (exportLayer diffs it like an
    // active one): active snapshots of dead processes are dropped when a snapshotter
    // opens, which made every bench process generate the tree again.
    snapshotter = await L.openSnapshotter(snapRoot);
    key = `bench-tree-${files}-${bytes}`;
    try {
      committed = (await snapshotter.stat(key)).kind === 'committed';
    } catch {
      committed = false;
    }
    if (committed) {
      dir = dirOfMounts(await snapshotter.view(`${key}-view-${process.pid}`, key));
    } else {
      await snapshotter.remove(`${key}-active`).catch(() => undefined);
      dir = dirOfMounts(await snapshotter.prepare(`${key}-active`));
    }
  } else {
    dir = join(base, `tree-${files}-${bytes}`);
  }
  const want = JSON.stringify({ ...params, dir });
  if (!committed || !existsSync(marker) || readFileSync(marker, 'utf8') !== want) {
    const t = performance.now();
    process.stdout.write(`generating ${files} files, ${mb(bytes).toFixed(0)} MiB under ${dir} ...\n`);
    await mkdir(dir, { recursive: true });
    const got = await makeTree(dir, params);
    if (snapshotter) {
      await snapshotter.remove(key).catch(() => undefined);
      await snapshotter.commit(key, `${key}-active`);
    }
    await writeFile(marker, want);
    process.stdout.write(`  generated ${got.files} files, ${mb(got.bytes).toFixed(0)} MiB in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  }
  return { dir, files, bytes, snapshotter, key, snapRoot };
}

/** The writable directory of an active snapshot's mounts (bind source or overlay upperdir). */
export function dirOfMounts(mounts) {
  const m = mounts[0];
  if (m.type === 'bind') return m.source;
  const upper = m.options.find((o) => o.startsWith('upperdir='));
  if (!upper) throw new Error(`cannot find a writable dir in mounts ${JSON.stringify(mounts)}`);
  return upper.slice('upperdir='.length);
}

/** Drops the page cache is NOT done: both sides read a warm tree. Reads `dir` once to warm it. */
export function warm(dir) {
  return sh(`tar -cf - -C '${dir}' . > /dev/null`);
}

/**
 * Runs a shell command; resolves { ms, stdout, stderr, maxRssKb, cpuMs } (maxRssKb and
 * cpuMs, user+sys of the whole command, from /usr/bin/time when present, else undefined).
 */
export function sh(cmd, { time = true } = {}) {
  const useTime = time && existsSync('/usr/bin/time');
  const argv = useTime ? ['/usr/bin/time', '-f', '__MAXRSS__%M %U %S', 'bash', '-c', `set -o pipefail; ${cmd}`] : ['bash', '-c', `set -o pipefail; ${cmd}`];
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    p.stdout.on('data', (c) => out.push(c));
    p.stderr.on('data', (c) => err.push(c));
    p.on('error', reject);
    p.on('close', (code) => {
      const ms = performance.now() - t0;
      let stderr = Buffer.concat(err).toString();
      let maxRssKb;
      let cpuMs;
      const m = /__MAXRSS__(\d+) ([\d.]+) ([\d.]+)/.exec(stderr);
      if (m) {
        maxRssKb = Number(m[1]);
        // user + sys of the command and all its children (the whole pipeline)
        cpuMs = (Number(m[2]) + Number(m[3])) * 1000;
        stderr = stderr.replace(/__MAXRSS__[\d. ]+\n?/, '');
      }
      if (code !== 0) reject(new Error(`${cmd} exited ${code}: ${stderr}`));
      else resolve({ ms, stdout: Buffer.concat(out).toString(), stderr, maxRssKb, cpuMs });
    });
  });
}

/** Runs `node bench/lib/<script> args` and parses the last line of its stdout as JSON. */
export async function nodeChild(script, args) {
  const here = new URL('.', import.meta.url).pathname;
  const r = await sh(`${JSON.stringify(process.execPath)} ${JSON.stringify(join(here, script))} ${args.map((a) => JSON.stringify(String(a))).join(' ')}`);
  const lines = r.stdout.trim().split('\n');
  return { ...JSON.parse(lines[lines.length - 1]), wallMs: r.ms, maxRssKb: r.maxRssKb };
}

export async function readJson(p) {
  return JSON.parse(await readFile(p, 'utf8'));
}

/** Median of numbers. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Runs `ours()` and `baseline()` alternately, A B B A … (BENCH_RUNS per side, default 2),
 * so load from other jobs on a shared machine falls on both sides; `between()` (when
 * given) runs untimed before every run. Each function resolves an object with `ms` (or
 * `wallMs`). Returns { ours: [...], baseline: [...], oursMs, baselineMs (medians), load: [1-min load at start, at end] }.
 */
export async function alternate(ours, baseline, between) {
  const runs = Math.max(1, Number(process.env.BENCH_RUNS ?? '2'));
  const { loadavg } = await import('node:os');
  const o = [];
  const b = [];
  const load0 = loadavg()[0];
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? [[ours, o], [baseline, b]] : [[baseline, b], [ours, o]];
    for (const [fn, acc] of order) {
      if (between) await between();
      acc.push(await fn());
    }
  }
  const ms = (r) => r.wallMs ?? r.ms;
  return { ours: o, baseline: b, oursMs: median(o.map(ms)), baselineMs: median(b.map(ms)), load: [fmt(load0, 2), fmt(loadavg()[0], 2)] };
}

/**
 * The fields every A/B bench reports from its alternating runs (`runs` as the
 * alternating runner returns it): the ratio of medians, both medians, every run's wall
 * and CPU time, and the load average at start and end.
 */
export function abFields(runs, target) {
  return {
    ratio: fmt(runs.oursMs / runs.baselineMs, 3),
    target,
    oursMs: fmt(runs.oursMs, 0),
    baselineMs: fmt(runs.baselineMs, 0),
    oursRunsMs: runs.ours.map((x) => fmt(x.wallMs, 0)),
    baselineRunsMs: runs.baseline.map((x) => fmt(x.ms, 0)),
    oursCpuMs: runs.ours.map((x) => fmt(x.cpuMs, 0)),
    baselineCpuMs: runs.baseline.map((x) => (x.cpuMs === undefined ? null : fmt(x.cpuMs, 0))),
    load: runs.load,
  };
}
