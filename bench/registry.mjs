// registry: push and pull throughput of a ~200 MiB image (4 gzip layers + a small one)
// with our RegistryClient against `skopeo copy` of the same image, on the same local
// docker-registry (Debian's docker-registry, started fresh for every push so both sides
// upload every byte). Each side runs in its own process (node or skopeo), whole-process
// wall time; the sides alternate (A B B A ..., BENCH_RUNS per side, default 3) so load
// from other jobs falls on both; medians, with the 1-min load average at start and end.
// ratio = ours / skopeo; target <= 1.2. Size scales with BENCH_SCALE (default 1 = 200 MiB).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { alternate, benchDir, fmt, lib, mb, report, SCALE, sh } from './lib/common.mjs';

const REGISTRY = '/usr/bin/docker-registry';
const SKOPEO = '/usr/bin/skopeo';
if (process.env.BENCH_RUNS === undefined) process.env.BENCH_RUNS = '3';
const LAYERS = 4;

// ---- child mode: one push or pull in its own process, prints one JSON line ----
if (process.argv[2] === 'child') {
  const [, , , op, storeRoot, ref] = process.argv;
  const L = await lib();
  const store = await L.ContentStore.open(storeRoot);
  const client = new L.RegistryClient();
  const t0 = performance.now();
  if (op === 'push') {
    const images = await L.ImageStore.open(store);
    const image = await images.get('bench/registry:v1');
    await client.push(store, image, ref);
  } else {
    const images = await L.ImageStore.open(store);
    await client.pull(store, images, ref, { force: true });
  }
  process.stdout.write(`${JSON.stringify({ ms: performance.now() - t0, maxRssKb: process.resourceUsage().maxRSS })}\n`);
  process.exit(0);
}

for (const [bin, pkg] of [[REGISTRY, 'docker-registry'], [SKOPEO, 'skopeo']]) {
  if (!existsSync(bin)) {
    console.error(`${bin} not found: install the Debian package "${pkg}"`);
    process.exit(1);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startRegistry(root) {
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  const port = await freePort();
  const cfg = join(root, 'config.yml');
  await writeFile(cfg, `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(root, 'data')}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn(REGISTRY, ['serve', cfg], { stdio: 'ignore' });
  const host = `127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(`http://${host}/v2/`);
      await r.body?.cancel();
      break;
    } catch {
      if (i > 300) throw new Error('docker-registry did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    host,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Deterministic incompressible bytes. */
function noise(size, seed) {
  const out = Buffer.allocUnsafe(Math.ceil(size / 4) * 4);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < out.length; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  return out.subarray(0, size);
}

async function* tarOf(name, data) {
  const h = Buffer.alloc(512);
  h.write(name, 0);
  h.write('0000644\0', 100); h.write('0000000\0', 108); h.write('0000000\0', 116);
  h.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136); h.write('        ', 148); h.write('0', 156); h.write('ustar\0', 257); h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  yield h;
  for (let off = 0; off < data.length; off += 1 << 20) yield data.subarray(off, off + (1 << 20));
  yield Buffer.alloc((512 - (data.length % 512)) % 512 + 1024);
}

const L = await lib();
const base = join(await benchDir(), 'registry');
await mkdir(base, { recursive: true });
const storeRoot = join(base, 'store');
const layerSize = Math.max(1 << 20, Math.round((200 * 1048576 * SCALE) / LAYERS));
const marker = join(storeRoot, `bench-${layerSize}`);
let image;
{
  const store = await L.ContentStore.open(storeRoot);
  const images = await L.ImageStore.open(store);
  image = existsSync(marker) ? await images.resolve('bench/registry:v1') : undefined;
  if (image === undefined) {
    const t = performance.now();
    process.stdout.write(`building a ${LAYERS}x${mb(layerSize).toFixed(0)} MiB image ...\n`);
    const layers = [await L.writeLayer(Readable.from(tarOf('small.txt', Buffer.from('hello\n'))), store, {})];
    for (let i = 0; i < LAYERS; i++) layers.push(await L.writeLayer(Readable.from(tarOf(`layer-${i}.bin`, noise(layerSize, i + 1))), store, { level: 1 }));
    image = await L.writeImage(store, {
      config: { created: '2024-01-01T00:00:00Z', architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] } },
      layers,
    });
    await images.tag('bench/registry:v1', image);
    await writeFile(marker, '');
    process.stdout.write(`  built in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  }
}
const layout = join(base, 'layout');
await rm(layout, { recursive: true, force: true });
await L.writeOciLayout(layout, await L.ContentStore.open(storeRoot), image, ['bench/registry:v1']);
const bytes = image.size;
const self = fileURLToPath(import.meta.url);
const node = (args) => sh([process.execPath, self, 'child', ...args].map((a) => JSON.stringify(a)).join(' ')).then((r) => ({ ...JSON.parse(r.stdout.trim().split('\n').at(-1)), wallMs: r.ms, rssKb: r.maxRssKb }));
const skopeo = (src, dst) => sh(`${SKOPEO} --insecure-policy copy -q --src-tls-verify=false --dest-tls-verify=false '${src}' '${dst}'`).then((r) => ({ wallMs: r.ms, rssKb: r.maxRssKb }));

const inTempDir = async (fn) => {
  const dst = await mkdtemp(join(base, 'pull-'));
  try {
    return await fn(dst);
  } finally {
    await rm(dst, { recursive: true, force: true });
  }
};

// Push: a fresh registry per run, so every blob is uploaded.
const withRegistry = async (fn) => {
  const reg = await startRegistry(join(base, 'reg-push'));
  try {
    return await fn(reg);
  } finally {
    await reg.stop();
  }
};
const push = await alternate(
  () => withRegistry((reg) => node(['push', storeRoot, `${reg.host}/bench/ours:v1`])),
  () => withRegistry((reg) => skopeo(`oci:${layout}`, `docker://${reg.host}/bench/skopeo:v1`)),
);

// Pull: one registry holding the image; a fresh destination per run.
const reg = await startRegistry(join(base, 'reg-pull'));
let pull;
let pullDurable;
try {
  await node(['push', storeRoot, `${reg.host}/bench/pull:v1`]);
  const src = `docker://${reg.host}/bench/pull:v1`;
  const oursPull = () => inTempDir((dst) => node(['pull', dst, `${reg.host}/bench/pull:v1`]));
  pull = await alternate(oursPull, () => inTempDir((dst) => skopeo(src, `oci:${join(dst, 'layout')}`)));
  // Our content store fsyncs every blob before it is visible (crash safety); skopeo's oci:
  // writer does not. Same durability: skopeo, then an fsync of every file it wrote
  // (coreutils `sync FILE...` fsyncs each) and of the blob directory.
  pullDurable = await alternate(oursPull, () =>
    inTempDir(async (dst) => {
      const r = await sh(`${SKOPEO} --insecure-policy copy -q --src-tls-verify=false '${src}' 'oci:${join(dst, 'layout')}' && find '${dst}' -type f -exec sync {} + && sync '${join(dst, 'layout', 'blobs', 'sha256')}'`);
      return { wallMs: r.ms, rssKb: r.maxRssKb };
    }),
  );
} finally {
  await reg.stop();
}

const MBps = (ms) => fmt(mb(bytes) / (ms / 1000), 1);
const peak = (rs) => Math.max(...rs.map((r) => r.rssKb ?? 0)) / 1024;
for (const [name, m] of [['registry-push', push], ['registry-pull', pull]]) {
  const r = {
    bench: name,
    ratio: fmt(m.oursMs / m.baselineMs, 3),
    target: 1.2,
    oursMs: fmt(m.oursMs, 0),
    skopeoMs: fmt(m.baselineMs, 0),
    oursRunsMs: m.ours.map((x) => fmt(x.wallMs, 0)),
    skopeoRunsMs: m.baseline.map((x) => fmt(x.wallMs, 0)),
    oursMBps: MBps(m.oursMs),
    skopeoMBps: MBps(m.baselineMs),
    oursPeakRssMB: fmt(peak(m.ours), 1),
    skopeoPeakRssMB: fmt(peak(m.baseline), 1),
    imageBytes: bytes,
    layers: image.manifest.layers.length,
    runs: m.ours.length,
    load: m.load,
  };
  if (name === 'registry-pull') {
    r.skopeoFsyncMs = fmt(pullDurable.baselineMs, 0);
    r.oursMs2 = fmt(pullDurable.oursMs, 0);
    r.ratioSameDurability = fmt(pullDurable.oursMs / pullDurable.baselineMs, 3);
    r.load2 = pullDurable.load;
  }
  console.log(`${name} (medians of ${r.runs} alternating runs, load ${r.load.join(' -> ')}): ours ${r.oursMs} ms (${r.oursMBps} MB/s) vs skopeo ${r.skopeoMs} ms (${r.skopeoMBps} MB/s) -> ratio ${r.ratio} (target <= ${r.target})${r.skopeoFsyncMs === undefined ? '' : `; second series (load ${r.load2.join(' -> ')}): ours ${r.oursMs2} ms vs skopeo + fsync of its files ${r.skopeoFsyncMs} ms -> ratio ${r.ratioSameDurability}`}`);
  report(r);
}
