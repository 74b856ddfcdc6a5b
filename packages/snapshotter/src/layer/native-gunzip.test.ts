import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { applyLayer } from '../apply/apply-layer.js';
import { ContentStore } from '../content/index.js';
import { packEntries } from '../tar/writer.js';
import type { TarEntry } from '../tar/types.js';
import { privilegedSkip } from '../testsuite/privileged.js';
import { treeManifest } from '../testsuite/tree-manifest.js';
import { native, setNativeEnabled } from '../util/native.js';
import { writeLayer } from './index.js';
import { openLayerStream } from './open-layer-stream.js';
import { CorruptLayerError } from './errors.js';
import { openNativeGunzip } from './native-gunzip.js';

const sys = native();
const BLOB = 'sha256:0000000000000000000000000000000000000000000000000000000000000000';

async function drain(path: string): Promise<{ out: Buffer; digest: string | undefined; chunks: number }> {
  const gz = openNativeGunzip(path, BLOB, { hash: true });
  assert.ok(gz, 'a gzip file opens');
  const parts: Buffer[] = [];
  // copies: a chunk is only valid for a while (the ring is reused)
  for await (const c of gz.chunks) parts.push(Buffer.from(c));
  return { out: Buffer.concat(parts), digest: gz.digest(), chunks: parts.length };
}

// half random (incompressible), half repetitive: several 1 MiB chunks, so the ring wraps
const data = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(5 << 20, 'layer '), randomBytes(12345)]);

describe('native gunzip (the applier’s blob reader)', { skip: sys ? false : 'the addon is not built' }, () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsbuild-ngz-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const cases: Array<[string, Buffer]> = [
    ['one member', gzipSync(data)],
    ['concatenated members', Buffer.concat([gzipSync(data.subarray(0, 1 << 20)), gzipSync(data.subarray(1 << 20))])],
    ['zero padding after the member', Buffer.concat([gzipSync(data), Buffer.alloc(4096)])],
    ['an empty stream', gzipSync(Buffer.alloc(0))],
  ];
  for (const [name, blob] of cases) {
    it(`gives node's bytes and their sha256: ${name}`, async () => {
      const p = join(dir, name.replace(/\W+/g, '-'));
      await writeFile(p, blob);
      const want = gunzipSync(blob);
      const { out, digest, chunks } = await drain(p);
      assert.ok(out.equals(want), 'same bytes as zlib.gunzipSync');
      assert.equal(digest, `sha256:${createHash('sha256').update(want).digest('hex')}`);
      if (want.length > 3 << 20) assert.ok(chunks > 4, `the ring wrapped (${chunks} chunks)`);
    });
  }

  it('is not used for what is not gzip', async () => {
    const p = join(dir, 'plain');
    await writeFile(p, data.subarray(0, 1000));
    assert.equal(openNativeGunzip(p, BLOB, { hash: false }), undefined);
    assert.throws(() => openNativeGunzip(join(dir, 'missing'), BLOB, { hash: false }), { code: 'ENOENT' });
  });

  const corrupt: Array<[string, (gz: Buffer) => Buffer, string]> = [
    ['truncated inside the member', (gz) => gz.subarray(0, gz.length >> 1), 'unexpected end of file'],
    ['its trailer cut', (gz) => gz.subarray(0, gz.length - 3), 'unexpected end of file'],
    ['a flipped byte in the compressed data', (gz) => Buffer.concat([gz.subarray(0, 5000), Buffer.from([gz[5000]! ^ 0xff]), gz.subarray(5001)]), ''],
    ['garbage after the member', (gz) => Buffer.concat([gz, Buffer.from('garbage')]), ''],
  ];
  for (const [name, spoil, detail] of corrupt) {
    it(`fails as node's zlib does: ${name}`, async () => {
      const blob = spoil(gzipSync(data));
      const p = join(dir, name.replace(/\W+/g, '-'));
      await writeFile(p, blob);
      assert.throws(() => gunzipSync(blob), 'node refuses it too');
      await assert.rejects(drain(p), (e: unknown) => {
        assert.ok(e instanceof CorruptLayerError, String(e));
        assert.equal(e.digest, BLOB);
        if (detail) assert.match(e.message, new RegExp(detail));
        return true;
      });
    });
  }

  it('a consumer that stops early leaves no read running and no digest', async () => {
    const p = join(dir, 'early');
    await writeFile(p, gzipSync(data));
    const gz = openNativeGunzip(p, BLOB, { hash: true })!;
    for await (const c of gz.chunks) {
      assert.ok(c.length > 0);
      break;
    }
    assert.equal(gz.digest(), undefined);
  });
});

describe('applyLayer of a gzip blob in the store', { skip: privilegedSkip() || (sys ? false : 'the addon is not built') }, () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsbuild-ngz-apply-'));
  });
  after(async () => {
    setNativeEnabled(true);
    await rm(dir, { recursive: true, force: true });
  });

  it('inflates the blob itself, with the tree and diffID of the stream path', async () => {
    const src = join(dir, 'src');
    const entries: TarEntry[] = [{ path: 'd', type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 1_600_000_000 }];
    await mkdir(src);
    for (let i = 0; i < 600; i++) {
      const body = i % 3 === 0 ? randomBytes(1000 + i * 37) : Buffer.alloc(i * 53, `f${i} `);
      await writeFile(join(src, `f${i}`), body);
      entries.push({ path: `d/f${i}`, type: 'file', mode: 0o640, uid: 0, gid: 0, size: body.length, mtime: 1_600_000_000 + i, source: join(src, `f${i}`) });
    }
    entries.push({ path: 'd/big', type: 'file', mode: 0o600, uid: 0, gid: 0, size: data.length, mtime: 1_600_000_000, source: join(src, 'big') });
    await writeFile(join(src, 'big'), data);
    const store = await ContentStore.open(join(dir, 'store'));
    const layer = await writeLayer(packEntries(entries), store, { compression: 'gzip' });
    const seen: Array<{ tree: string[]; diffId: string | undefined; streamRead: boolean }> = [];
    for (const on of [true, false]) {
      setNativeEnabled(on);
      const target = await mkdtemp(join(dir, on ? 'native-' : 'stream-'));
      const stream = openLayerStream(store, layer);
      const r = await applyLayer(stream, target, { diffId: true });
      seen.push({ tree: await treeManifest(target, { mtimes: true }), diffId: r.diffId, streamRead: stream.readableDidRead });
    }
    setNativeEnabled(true);
    assert.equal(seen[0]!.streamRead, false, 'the native path does not read the stream');
    assert.equal(seen[1]!.streamRead, true);
    assert.deepEqual(seen[0]!.tree, seen[1]!.tree);
    assert.equal(seen[0]!.diffId, layer.diffId);
    assert.equal(seen[1]!.diffId, layer.diffId);
  });
});
