#!/usr/bin/env node
// Runs the benchmarks (all, or those named): `npm run bench [-- name ...]`.
// Each bench runs in its own process, prints human lines and one JSON line, and never
// asserts. Env: BENCH_SCALE (default 1 = the 1 GiB / 50,000-file tree), BENCH_DIR (data
// dir; default a temp dir removed afterwards), BENCH_KEEP=1 keeps it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const ALL = ['export-gzip', 'export-uncompressed', 'zstd-vs-gzip', 'apply-gzip', 'diff-small-change', 'registry', 'noop-rebuild', 'parallel-stages'];
// run only when named: `peers` times a BuildKit daemon beside tsbuild (see peers.mjs)
const ON_REQUEST = ['peers'];
const names = process.argv.slice(2);
const unknown = names.filter((n) => !ALL.includes(n) && !ON_REQUEST.includes(n));
if (unknown.length > 0) {
  console.error(`unknown bench ${unknown.join(', ')}; known: ${[...ALL, ...ON_REQUEST].join(', ')}`);
  process.exit(2);
}
const build = spawnSync('npx', ['tsc', '-b', 'packages/snapshotter'], { cwd: join(here, '..'), stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
const own = process.env.BENCH_DIR === undefined;
const dir = process.env.BENCH_DIR ?? mkdtempSync(join(tmpdir(), 'tsbuild-bench-'));
let failed = 0;
try {
  for (const name of names.length > 0 ? names : ALL) {
    console.log(`== ${name}`);
    const r = spawnSync(process.execPath, [join(here, `${name}.mjs`)], { stdio: 'inherit', env: { ...process.env, BENCH_DIR: dir } });
    if (r.status !== 0) {
      failed++;
      console.log(JSON.stringify({ bench: name, error: `exited ${r.status ?? r.signal}` }));
    }
  }
} finally {
  if (own && process.env.BENCH_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
}
process.exit(failed > 0 ? 1 : 0);
