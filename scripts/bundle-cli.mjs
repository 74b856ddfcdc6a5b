#!/usr/bin/env node
// Bundles the compiled CLI and the workspace packages it imports (packages/*/dist) into
// packages/cli/bundle/main.cjs with esbuild, so a `tsbuild` process loads one file
// instead of ~165 (start-up: see bench/README.md, peers, "Fourth round"). Third-party
// JavaScript is inlined as well; what stays external is what loads a native addon by
// its package's place (zstd-napi, bindings; better-sqlite3's addon is passed to it as
// `nativeBinding` by cache-db.ts), and our own addon. The compression pool's worker
// (gzip and zstd blocks) is a second entry, next to main.cjs, where the pool looks for
// it. bin/tsbuild.js uses the bundle only while `stamp.json` matches the packages'
// dist/.tsbuildinfo files (a later `tsc -b` makes it stale: dist/ is used).
// Runs after `tsc -b` in `npm run build` / `prepare`; without esbuild (a production
// install) it says so and leaves the CLI unbundled.
import { createHash } from 'node:crypto';
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

// commander, tar-stream (and streamx & co.), p-limit, better-sqlite3's JavaScript were ~35
// CommonJS files resolved, read and compiled one by one at every start
const external = ['zstd-napi', 'bindings'];

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const common = { bundle: true, platform: 'node', target: 'node20', external, logLevel: 'warning' };
// main.cjs: CommonJS, so that bin/tsbuild.js can compile it as a vm.Script with a V8 code
// cache (Node 20 has no compile cache for ES modules; parsing the ~1 MB bundle was ~35 ms
// of every start). import.meta.url becomes the bundle file's URL.
await esbuild.build({
  ...common,
  entryPoints: { main: join(root, 'packages', 'cli', 'dist', 'main.js') },
  outdir: out,
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
  // import() becomes require(): V8 drops a script's dynamic-import host options for
  // functions it restores from a code cache ("A dynamic import callback was not specified")
  supported: { 'dynamic-import': false },
  define: { 'import.meta.url': '__tsbuildImportMetaUrl' },
  banner: { js: "const __tsbuildImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
});
// the compression pool's worker stays an ES module (a Worker of its own)
await esbuild.build({
  ...common,
  entryPoints: { 'block-worker': join(root, 'packages', 'snapshotter', 'dist', 'layer', 'block-worker.js') },
  outdir: out,
  format: 'esm',
  // the inlined CJS packages call require() for Node's modules and for addons
  banner: { js: "import { createRequire as __tsbuildCreateRequire } from 'node:module'; const require = __tsbuildCreateRequire(import.meta.url);" },
});
// what the bundle was made from: bin/tsbuild.js compares these mtimes before using it
const inputs = {};
for (const p of pkgs) {
  const info = join(root, 'packages', p, 'dist', '.tsbuildinfo');
  inputs[relative(join(root, 'packages', 'cli', 'bin'), info)] = statSync(info).mtimeMs;
}
// the bundle's own digest names its code cache (V8 checks only the source's length)
const bundleDigest = createHash('sha256').update(readFileSync(join(out, 'main.cjs'))).digest('hex').slice(0, 16);
await writeFile(join(out, 'stamp.json'), JSON.stringify({ inputs, bundleDigest }));
