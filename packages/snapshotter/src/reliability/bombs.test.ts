/**
 * Decompression bombs and hostile layer tar streams (catalog T29): the applier's caps on
 * uncompressed bytes (absolute and relative to the compressed blob), entry count and
 * extended-header size fail the unpack with a clear error before the disk fills; a
 * truncated gzip trailer is an error although the tar inside parsed; nothing is
 * committed after any of them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ContentStore } from '../content/index.js';
import { sha256, type Digest } from '../content/digest.js';
import { DigestMismatchError, InvalidTarError, LayerLimitError } from '../errors.js';
import { CorruptLayerError } from '../layer/errors.js';
import { openSnapshotter } from '../snapshots/snapshotter.js';
import type { Snapshotter } from '../snapshots/types.js';
import { privilegedSkip } from '../testsuite/privileged.js';
import { applyLayer, DEFAULT_LAYER_LIMITS } from '../apply/apply-layer.js';
import { unpackImage } from '../apply/unpack.js';
import { rawTar, type RawEntry } from './h-tar.js';

const skip = privilegedSkip();
const GZ = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** Bytes in a directory tree (what an unpack wrote to disk). */
async function du(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += (await stat(join(e.parentPath, e.name))).size;
  }
  return n;
}

async function committed(s: Snapshotter): Promise<string[]> {
  const keys: string[] = [];
  for await (const i of s.walk()) keys.push(`${i.kind}:${i.key}`);
  return keys;
}

describe('T29: decompression bombs and hostile tar streams', { skip }, () => {
  const base = skip ? '' : mkdtempSync(join(tmpdir(), 'tsbuild-bombs-'));
  let n = 0;
  after(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  async function fresh(): Promise<{ store: ContentStore; snaps: Snapshotter; dir: string }> {
    const dir = join(base, `t${n++}`);
    return { store: await ContentStore.open(join(dir, 'content')), snaps: await openSnapshotter(join(dir, 'snap')), dir };
  }

  /** Stores `tar` gzipped as a layer blob; the diffID is the tar's own digest. */
  async function gzLayer(store: ContentStore, tar: Buffer): Promise<{ digest: Digest; size: number; diffId: Digest; mediaType: string }> {
    const gz = gzipSync(tar, { level: 9 });
    const info = await store.writeBlob(gz);
    return { digest: info.digest, size: gz.length, diffId: sha256(tar), mediaType: GZ };
  }

  it('a tiny gzip blob whose entry claims 2 GiB is refused at the header with the default caps, nothing committed', async () => {
    const { store, snaps } = await fresh();
    // a real bomb body is not needed: the claim alone is over the budget (1 GiB floor for a ~1 KiB blob)
    const tar = rawTar([{ name: 'zeros', size: 2 * 1024 ** 3, body: Buffer.alloc(4096) }], { noEnd: true });
    const layer = await gzLayer(store, tar);
    const t0 = Date.now();
    const err = await unpackImage(store, snaps, [layer]).then(
      () => assert.fail('expected the unpack to fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof LayerLimitError, String(err));
    assert.equal(err.limit, 'bytes');
    assert.equal(err.max, DEFAULT_LAYER_LIMITS.ratioFloor);
    assert.match(err.message, /"zeros" claims 2147483648 bytes/);
    assert.ok(Date.now() - t0 < 5000, 'the refusal must not read the body');
    assert.deepEqual(await committed(snaps), []);
  });

  it('a stream of small entries that expands past ratio x compressed size stops at the budget (the disk never fills)', async () => {
    const { store, snaps, dir } = await fresh();
    // 400 files of 64 KiB of zeros: 25 MiB of tar, ~27 KiB of gzip; no header lies
    const zeros = Buffer.alloc(64 * 1024);
    const entries: RawEntry[] = [];
    for (let i = 0; i < 400; i++) entries.push({ name: `z/${i}`, body: zeros });
    const layer = await gzLayer(store, rawTar(entries));
    const limits = { ratioFloor: 1024 * 1024, maxRatio: 50 };
    const budget = Math.max(limits.ratioFloor, layer.size * limits.maxRatio);
    await assert.rejects(unpackImage(store, snaps, [layer], { limits }), (e: unknown) => {
      assert.ok(e instanceof LayerLimitError, String(e));
      assert.equal(e.max, budget);
      assert.match(e.message, /uncompressed size limit: expected at most \d+ bytes/);
      return true;
    });
    assert.deepEqual(await committed(snaps), []);
    // and through applyLayer directly: what reached the disk stays under the budget
    const target = join(dir, 'apply');
    await import('node:fs/promises').then((fs) => fs.mkdir(target));
    const tar = rawTar(entries);
    await assert.rejects(applyLayer(Readable.from([tar]), target, { limits, compressedSize: layer.size }), LayerLimitError);
    assert.ok((await du(target)) <= budget, `wrote ${await du(target)} bytes, budget ${budget}`);
    // the absolute cap applies without a compressed size too
    await assert.rejects(applyLayer(Readable.from([tar]), join(dir, 'apply'), { limits: { maxBytes: 4 * 1024 * 1024 } }), /expected at most 4194304 bytes/);
    // with the defaults the same honest layer applies
    await rm(target, { recursive: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(target));
    assert.equal((await applyLayer(Readable.from([tar]), target, { compressedSize: layer.size })).entries, 400);
  });

  it('bytes after the end-of-archive marker count too (a bomb hidden in trailing zeros)', async () => {
    const { store, snaps } = await fresh();
    const tar = Buffer.concat([rawTar([{ name: 'f', body: Buffer.from('x') }]), Buffer.alloc(8 * 1024 * 1024)]);
    const layer = await gzLayer(store, tar);
    await assert.rejects(unpackImage(store, snaps, [layer], { limits: { ratioFloor: 1024 * 1024 } }), LayerLimitError);
    assert.deepEqual(await committed(snaps), []);
  });

  it('entry count: many empty entries, or one path written again and again, fail at maxEntries', async () => {
    const { store, snaps } = await fresh();
    const many: RawEntry[] = [];
    for (let i = 0; i < 1000; i++) many.push({ name: `e${i}` });
    const dup: RawEntry[] = [];
    for (let i = 0; i < 1000; i++) dup.push({ name: 'same/path' });
    for (const tar of [rawTar(many), rawTar(dup)]) {
      const layer = await gzLayer(store, tar);
      await assert.rejects(unpackImage(store, snaps, [layer], { limits: { maxEntries: 200 } }), (e: unknown) => {
        assert.ok(e instanceof LayerLimitError, String(e));
        assert.equal(e.limit, 'entries');
        assert.match(e.message, /entry count limit: expected at most 200 entries, found 201/);
        return true;
      });
    }
    assert.deepEqual(await committed(snaps), []);
  });

  it('an 8 EiB size claim and a 100 MiB PAX header are refused from the header alone', async () => {
    const { dir } = await fresh();
    const target = join(dir, 'x');
    await import('node:fs/promises').then((fs) => fs.mkdir(target));
    const huge = rawTar([{ name: 'huge', size: 2 ** 63, base256: true, body: Buffer.alloc(512) }], { noEnd: true });
    await assert.rejects(applyLayer(Readable.from([huge]), target), (e: unknown) => e instanceof InvalidTarError || e instanceof LayerLimitError);
    // a base-256 claim that is representable (16 GiB) still meets the byte cap at the header
    const big = rawTar([{ name: 'big', size: 16 * 1024 ** 3, base256: true, body: Buffer.alloc(512) }], { noEnd: true });
    await assert.rejects(applyLayer(Readable.from([big]), target, { limits: { maxBytes: 1024 ** 3 } }), /"big" claims 17179869184 bytes/);
    // only the PAX header itself is there: a reader that tried to buffer 100 MiB would report truncation instead
    const pax = rawTar([{ name: 'PaxHeaders/x', type: 'x', size: 100 * 1024 * 1024, body: Buffer.alloc(1024) }], { noEnd: true });
    await assert.rejects(applyLayer(Readable.from([pax]), target), (e: unknown) => {
      assert.ok(e instanceof InvalidTarError, String(e));
      assert.match(e.message, /extended header of at most 1048576 bytes, found one of 104857600/);
      return true;
    });
    assert.deepEqual(await readdir(target), []);
  });

  it('a gzip blob with a truncated trailer fails although the tar parsed; a diffID mismatch fails the unpack', async () => {
    const { store, snaps } = await fresh();
    const tar = rawTar([{ name: 'etc/ok', body: Buffer.from('fine\n') }]);
    const gz = gzipSync(tar);
    const cut = gz.subarray(0, gz.length - 6); // CRC32 and ISIZE partly missing, deflate data complete
    const info = await store.writeBlob(cut);
    await assert.rejects(unpackImage(store, snaps, [{ digest: info.digest, size: cut.length, diffId: sha256(tar), mediaType: GZ }]), CorruptLayerError);
    // the compressed digest is the blob's; the uncompressed stream must still match the config's diff_id
    const whole = await store.writeBlob(gz);
    await assert.rejects(unpackImage(store, snaps, [{ digest: whole.digest, size: gz.length, diffId: sha256(Buffer.from('other')), mediaType: GZ }]), DigestMismatchError);
    assert.deepEqual(await committed(snaps), []);
    // the same blob with its real diffID applies
    assert.equal(await unpackImage(store, snaps, [{ digest: whole.digest, size: gz.length, diffId: sha256(tar), mediaType: GZ }]), sha256(tar));
  });
});
