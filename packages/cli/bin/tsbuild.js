#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in ../dist (built by `npm ci` / `npm run build`).
// `npm run build` also bundles it into ../bundle (scripts/bundle-cli.mjs: one module to
// load instead of ~130); the bundle is used only while it matches the compiled packages.
import { readFileSync, statSync } from 'node:fs';

function bundleFresh() {
  try {
    const { inputs } = JSON.parse(readFileSync(new URL('../bundle/stamp.json', import.meta.url), 'utf8'));
    return Object.entries(inputs).every(([rel, mtime]) => statSync(new URL(rel, import.meta.url)).mtimeMs === mtime);
  } catch {
    return false;
  }
}

const { main } = bundleFresh() ? await import('../bundle/main.js') : await import('../dist/main.js');
process.exitCode = await main(process.argv.slice(2));
