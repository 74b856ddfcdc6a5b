#!/usr/bin/env node
// Bundles the compiled CLI and the workspace packages it imports (packages/*/dist) into
// packages/cli/bundle/main.js with esbuild, so a `tsbuild` process loads one module
// instead of ~130 (start-up: see bench/README.md, peers, "Fourth round"). Third-party
// packages stay external (Node loads them from node_modules as before), and so does the
// native addon. The compression pool's worker (gzip and zstd blocks) is a second entry,
// next to main.js, where the pool looks for it. bin/tsbuild.js uses the bundle only while `stamp.json` matches the
// packages' dist/.tsbuildinfo files (a later `tsc -b` makes it stale: dist/ is used).
// Runs after `tsc -b` in `npm run build` / `prepare`; without esbuild (a production
// install) it says so and leaves the CLI unbundled.
import { readFileSync, statSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkgs = ['parser', 'snapshotter', 'solver', 'cli'];
const out = join(root, 'packages', 'cli', 'bundle');

let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  console.error('bundle-cli: esbuild is not installed (dev dependency): the CLI runs unbundled from dist/');
  process.exit(0);
}

const external = new Set();
for (const p of pkgs) {
  const pj = JSON.parse(readFileSync(join(root, 'packages', p, 'package.json'), 'utf8'));
  for (const d of Object.keys(pj.dependencies ?? {})) if (!d.startsWith('@tsbuild/')) external.add(d);
}

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await esbuild.build({
  entryPoints: {
    main: join(root, 'packages', 'cli', 'dist', 'main.js'),
    'block-worker': join(root, 'packages', 'snapshotter', 'dist', 'layer', 'block-worker.js'),
  },
  outdir: out,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: [...external],
  logLevel: 'warning',
});
// what the bundle was made from: bin/tsbuild.js compares these mtimes before using it
const inputs = {};
for (const p of pkgs) {
  const info = join(root, 'packages', p, 'dist', '.tsbuildinfo');
  inputs[relative(join(root, 'packages', 'cli', 'bin'), info)] = statSync(info).mtimeMs;
}
await writeFile(join(out, 'stamp.json'), JSON.stringify({ inputs }));
