import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';
import { ContentStore } from '../content/index.js';
import { CorruptLayerError, InvalidLayerOptionError, UnsupportedLayerMediaTypeError } from './errors.js';
import { MediaTypes, openLayerStream, writeLayer, type Compression } from './index.js';
import { chunked, prngBytes, requireTool, run, textBytes } from './test-helpers/tools.js';

const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let root: string;
let store: ContentStore;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'tsbuild-layer-'));
  store = await ContentStore.open(root);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function blobsIn(): Promise<string[]> {
  const out: string[] = [];
  for await (const info of store.walk()) out.push(info.digest);
  return out;
}

async function ingestEntries(): Promise<string[]> {
  try {
    return await readdir(join(root, 'ingest'));
  } catch {
    return [];
  }
}

const data = Buffer.concat([textBytes(1, 700_000), prngBytes(2, 300_000), textBytes(3, 123_457)]);

describe('writeLayer', () => {
  const expectedType: Record<Compression, string> = {
    gzip: MediaTypes.layerGzip,
    zstd: MediaTypes.layerZstd,
    uncompressed: MediaTypes.layer,
  };
  for (const compression of ['gzip', 'zstd', 'uncompressed'] as const) {
    it(`${compression}: diffID and digest match independent hashes; the blob decodes to the tar`, async (t) => {
      const desc = await writeLayer(Readable.from(chunked(data, [1000, 70_000, 3])), store, { compression });
      const blob = await readFile(store.blobPath(desc.digest));
      assert.equal(desc.mediaType, expectedType[compression]);
      assert.equal(desc.diffId, sha(data));
      assert.equal(desc.uncompressedSize, data.length);
      assert.equal(desc.digest, sha(blob));
      assert.equal(desc.size, blob.length);
      if (compression === 'uncompressed') assert.ok(blob.equals(data));
      if (compression === 'gzip' && requireTool(t, 'gzip', 'gzip')) assert.ok(run('gzip', ['-dc'], blob).equals(data));
      if (compression === 'gzip' && requireTool(t, 'pigz', 'pigz')) assert.ok(run('pigz', ['-dc'], blob).equals(data));
      if (compression === 'zstd' && requireTool(t, 'zstd', 'zstd')) assert.ok(run('zstd', ['-dc'], blob).equals(data));
      if (compression !== 'uncompressed') assert.ok(blob.length < data.length * 0.7, `${compression} did not compress: ${blob.length}`);
      const back = await buffer(openLayerStream(store, desc));
      assert.ok(back.equals(data), 'openLayerStream does not give the tar back');
    });
  }

  it('is deterministic: the same tar twice gives the same digests (gzip and zstd)', async () => {
    for (const compression of ['gzip', 'zstd'] as const) {
      const a = await writeLayer(Readable.from(chunked(data, [4096])), store, { compression });
      const b = await writeLayer(Readable.from(chunked(data, [999_999])), store, { compression });
      assert.deepEqual(a, b);
    }
  });

  it('handles an empty tar stream', async () => {
    for (const compression of ['gzip', 'zstd', 'uncompressed'] as const) {
      const desc = await writeLayer(Readable.from([]), store, { compression });
      assert.equal(desc.diffId, sha(Buffer.alloc(0)));
      assert.equal(desc.uncompressedSize, 0);
      assert.equal((await buffer(openLayerStream(store, desc))).length, 0);
    }
  });

  for (const compression of ['gzip', 'zstd'] as const) {
    it(`${compression}: abort (signal) leaves nothing in the store`, async () => {
      const before = await blobsIn();
      const ac = new AbortController();
      let sent = 0;
      const src = new Readable({
        read() {
          sent++;
          if (sent === 20) ac.abort();
          this.push(textBytes(sent, 65536));
        },
      });
      await assert.rejects(writeLayer(src, store, { compression, signal: ac.signal }), { name: 'AbortError' });
      assert.deepEqual(await blobsIn(), before);
      assert.deepEqual(await ingestEntries(), []);
    });
  }

  it('an upstream error leaves nothing in the store and is rethrown', async () => {
    const before = await blobsIn();
    for (const compression of ['gzip', 'zstd', 'uncompressed'] as const) {
      let n = 0;
      const src = new Readable({
        read() {
          if (++n === 5) this.destroy(new Error('tar producer failed'));
          else this.push(prngBytes(n, 100_000));
        },
      });
      await assert.rejects(writeLayer(src, store, { compression }), /tar producer failed/);
    }
    assert.deepEqual(await blobsIn(), before);
    assert.deepEqual(await ingestEntries(), []);
  });

  it('an already aborted signal rejects before opening an ingest', async () => {
    await assert.rejects(writeLayer(Readable.from([data]), store, { signal: AbortSignal.abort() }), { name: 'AbortError' });
    assert.deepEqual(await ingestEntries(), []);
  });

  it('rejects bad options', async () => {
    await assert.rejects(writeLayer(Readable.from([]), store, { compression: 'brotli' as Compression }), InvalidLayerOptionError);
    await assert.rejects(writeLayer(Readable.from([]), store, { compression: 'gzip', level: 11 }), InvalidLayerOptionError);
    await assert.rejects(writeLayer(Readable.from([]), store, { compression: 'zstd', level: 99 }), InvalidLayerOptionError);
  });

  for (const compression of ['gzip', 'zstd'] as const) {
    it(`${compression}: memory stays bounded on a 200 MB stream`, async (t) => {
      const total = 200 * 1024 * 1024;
      const chunk = 256 * 1024;
      const text = textBytes(99, chunk);
      const rnd = prngBytes(98, chunk);
      let produced = 0;
      const src = new Readable({
        read() {
          if (produced >= total) return this.push(null);
          // alternate compressible and random chunks; vary them so nothing is a trivial repeat
          const base = (produced / chunk) % 2 === 0 ? text : rnd;
          const c = Buffer.from(base);
          c.writeUInt32LE(produced / chunk, 0);
          produced += chunk;
          this.push(c);
        },
      });
      global.gc?.();
      const rss0 = process.memoryUsage().rss;
      let peak = rss0;
      const timer = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 20);
      try {
        const desc = await writeLayer(src, store, { compression, level: 1 });
        assert.equal(desc.uncompressedSize, total);
      } finally {
        clearInterval(timer);
      }
      peak = Math.max(peak, process.memoryUsage().rss);
      const growth = (peak - rss0) / 1048576;
      t.diagnostic(`rss growth ${growth.toFixed(1)} MB`);
      assert.ok(growth < 100, `rss grew by ${growth.toFixed(1)} MB`);
    });
  }
});

describe('openLayerStream', () => {
  it('sniffs the compression from the magic bytes whatever the (layer) media type says', async () => {
    const gz = await store.writeBlob(zlib.gzipSync(data));
    const docker = await buffer(openLayerStream(store, { digest: gz.digest, mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' }));
    assert.ok(docker.equals(data));
    const mislabelled = await buffer(openLayerStream(store, { digest: gz.digest, mediaType: MediaTypes.layer }));
    assert.ok(mislabelled.equals(data));
  });

  it('reads a multi-member gzip blob', async () => {
    const gz = await store.writeBlob(Buffer.concat([zlib.gzipSync(data.subarray(0, 1000)), zlib.gzipSync(data.subarray(1000))]));
    assert.ok((await buffer(openLayerStream(store, { digest: gz.digest, mediaType: MediaTypes.layerGzip }))).equals(data));
  });

  it('rejects a non-layer media type', () => {
    assert.throws(
      () => openLayerStream(store, { digest: sha(data) as `sha256:${string}`, mediaType: 'application/vnd.oci.image.config.v1+json' }),
      UnsupportedLayerMediaTypeError,
    );
  });

  for (const compression of ['gzip', 'zstd'] as const) {
    it(`${compression}: a truncated blob is an error, not a short tar`, async () => {
      const desc = await writeLayer(Readable.from([data]), store, { compression });
      const blob = await readFile(store.blobPath(desc.digest));
      // keep everything but the last 4 bytes (gzip: part of ISIZE; zstd: the content checksum)
      const cut = await store.writeBlob(blob.subarray(0, blob.length - 4));
      await assert.rejects(buffer(openLayerStream(store, { digest: cut.digest, mediaType: desc.mediaType })), CorruptLayerError);
      const flipped = Buffer.from(blob);
      flipped[Math.floor(blob.length / 2)]! ^= 0x55;
      const bad = await store.writeBlob(flipped);
      await assert.rejects(buffer(openLayerStream(store, { digest: bad.digest, mediaType: desc.mediaType })), CorruptLayerError);
    });
  }

  it('a missing blob errors the stream with the store error', async () => {
    const missing = sha(Buffer.from('nope')) as `sha256:${string}`;
    await assert.rejects(buffer(openLayerStream(store, { digest: missing, mediaType: MediaTypes.layerGzip })), { code: 'NOT_FOUND' });
  });
});
