#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS TSBUILD_NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} node
// Thin launcher: the compiled CLI lives in ../dist (built by `npm ci` / `npm run build`).
// `npm run build` also bundles it into ../bundle (scripts/bundle-cli.mjs: one file to
// load instead of ~165); the bundle is used only while it matches the compiled packages.
//
// The shebang hands NODE_EXTRA_CA_CERTS over as TSBUILD_NODE_EXTRA_CA_CERTS: Node reads
// the former's file eagerly at every start (~50 ms for Debian's whole CA bundle), and most
// commands never open a TLS connection; the registry client and `ADD <url>` add those
// certificates to their own TLS options when they do (snapshotter's util/tls-trust.ts).
// Started as `node bin/tsbuild.js`, Node loads NODE_EXTRA_CA_CERTS itself, as usual.
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

function bundleStamp() {
  try {
    const stamp = JSON.parse(readFileSync(new URL('../bundle/stamp.json', import.meta.url), 'utf8'));
    const fresh = Object.entries(stamp.inputs).every(([rel, mtime]) => statSync(new URL(rel, import.meta.url)).mtimeMs === mtime);
    return fresh ? stamp : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs the CommonJS bundle as a vm.Script with a V8 code cache next to it (what Node 22's
 * module.enableCompileCache does; Node 20 has none for ES modules): compiling the bundle
 * was ~35 ms of every start. The cache is named by the bundle's digest (V8 itself checks
 * only its version, flags and the source's length) and the kind of command, written once
 * after a command that found none or had it rejected, to a temporary name and renamed;
 * where the directory is not writable, every start compiles. The bundle has no import() (scripts/bundle-cli.mjs:
 * functions restored from a cache lose a script's dynamic-import options).
 */
function loadBundle(stamp) {
  const file = fileURLToPath(new URL('../bundle/main.cjs', import.meta.url));
  // one cache for builds (`build` is the default command: `tsbuild -t x .`), one for the
  // rest: a cache holds the functions that ran before it was made, so --help/--version
  // must not be the run that writes the builds' one
  const arg = process.argv[2] ?? '';
  const kind = arg === 'build' || (arg.startsWith('-') && !['-h', '--help', '-V', '--version'].includes(arg)) ? 'build' : 'other';
  const cacheFile = `${file}.${stamp.bundleDigest}.${process.version}.${kind}.v8cache`;
  let cachedData;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(file, 'utf8')}\n})`;
  const script = new vm.Script(source, {
    filename: file,
    ...(cachedData !== undefined ? { cachedData } : {}),
  });
  const module = { exports: {} };
  script.runInThisContext()(module.exports, createRequire(file), module, file, dirname(file));
  const saveCache = () => {
    if (cachedData !== undefined && !script.cachedDataRejected) return;
    try {
      const tmp = `${cacheFile}.tmp-${process.pid}`;
      writeFileSync(tmp, script.createCachedData());
      renameSync(tmp, cacheFile);
    } catch {
      // read-only install: no cache
    }
  };
  return { main: module.exports.main, saveCache };
}

const stamp = bundleStamp();
if (stamp?.bundleDigest !== undefined) {
  const { main, saveCache } = loadBundle(stamp);
  process.once('exit', saveCache); // also after process.exit() (commander's --version, --help)
  process.exitCode = await main(process.argv.slice(2));
} else {
  const { main } = await import('../dist/main.js');
  process.exitCode = await main(process.argv.slice(2));
}
