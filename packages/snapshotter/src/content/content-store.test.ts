import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { after, describe, it } from 'node:test';
import {
  BlobNotFoundError,
  ContentStore,
  DigestMismatchError,
  IngestLockedError,
  InvalidDigestError,
  SizeMismatchError,
  WriterClosedError,
  parseDigest,
  sha256,
  type Digest,
} from './index.js';

const dirs: string[] = [];
async function freshStore(): Promise<ContentStore> {
  const d = await mkdtemp(join(tmpdir(), 'tsbuild-content-'));
  dirs.push(d);
  return ContentStore.open(join(d, 'store'));
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function digestHexOf(d: Digest): string {
  return d.slice('sha256:'.length);
}

async function blobNames(store: ContentStore): Promise<string[]> {
  return (await readdir(join(store.root, 'blobs', 'sha256'))).sort();
}

describe('digest', () => {
  it('hashes strings and bytes alike', () => {
    assert.equal(sha256(''), 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(sha256(Buffer.from('abc')), sha256('abc'));
  });
  it('rejects malformed digests', () => {
    const ok = sha256('x');
    assert.equal(parseDigest(ok), ok);
    for (const bad of ['', 'sha256:', 'sha256:ABC', `sha512:${'a'.repeat(64)}`, ok.toUpperCase(), `${ok}0`, `sha256:${'g'.repeat(64)}`]) {
      assert.throws(() => parseDigest(bad), (e: unknown) => e instanceof InvalidDigestError && e.code === 'INVALID_ARGUMENT');
    }
  });
});

describe('ContentStore', () => {
  it('creates an OCI layout', async () => {
    const store = await freshStore();
    assert.deepEqual(JSON.parse(await readFile(join(store.root, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
    assert.deepEqual(JSON.parse(await readFile(join(store.root, 'index.json'), 'utf8')).manifests, []);
    await ContentStore.open(store.root); // reopening keeps things
  });

  it('writes, reads, streams, deletes', async () => {
    const store = await freshStore();
    const info = await store.writeBlob(Buffer.from('hello'));
    assert.deepEqual(info, { digest: sha256('hello'), size: 5 });
    assert.equal(await store.has(info.digest), true);
    assert.deepEqual(await store.info(info.digest), info);
    assert.equal((await store.readBlob(info.digest)).toString(), 'hello');
    assert.equal(await text(store.createReadStream(info.digest)), 'hello');
    assert.equal(await readFile(store.blobPath(info.digest), 'utf8'), 'hello');
    await store.delete(info.digest);
    assert.equal(await store.has(info.digest), false);
    await assert.rejects(store.info(info.digest), BlobNotFoundError);
    await assert.rejects(store.readBlob(info.digest), BlobNotFoundError);
    await assert.rejects(text(store.createReadStream(info.digest)), BlobNotFoundError);
    await assert.rejects(store.delete(info.digest), (e: unknown) => e instanceof BlobNotFoundError && e.code === 'NOT_FOUND');
  });

  it('streams large content through a writer in mixed chunk sizes', async () => {
    const store = await freshStore();
    const parts: Buffer[] = [];
    for (let i = 0; i < 400; i++) parts.push(Buffer.alloc((i * 7919) % 150_000, i));
    const all = Buffer.concat(parts);
    const w = await store.writer();
    for (const p of parts) await w.write(p);
    const info = await w.commit({ size: all.length, digest: sha256(all) });
    assert.equal(info.digest, sha256(all));
    assert.ok((await store.readBlob(info.digest)).equals(all));
    const streamed: Buffer[] = [];
    for await (const c of store.createReadStream(info.digest)) streamed.push(c as Buffer);
    assert.ok(Buffer.concat(streamed).equals(all));
    assert.deepEqual(await readdir(join(store.root, 'ingest')), []);
  });

  it('big blobs (background fdatasync every 32 MiB) commit intact; abort with a sync in flight leaves nothing', async () => {
    const store = await freshStore();
    const chunk = (i: number): Buffer => Buffer.alloc(1 << 20, i);
    const w = await store.writer();
    const h = createHash('sha256');
    for (let i = 0; i < 80; i++) {
      const c = chunk(i);
      h.update(c);
      await w.write(c);
    }
    const info = await w.commit({ size: 80 << 20, digest: `sha256:${h.digest('hex')}` });
    const back = await store.readBlob(info.digest);
    assert.equal(back.length, 80 << 20);
    for (const i of [0, 31, 32, 33, 79]) assert.equal(back[i << 20], i, `chunk ${i}`);
    const w2 = await store.writer();
    for (let i = 0; i < 40; i++) await w2.write(chunk(200 - i));
    await w2.abort();
    assert.deepEqual(await blobNames(store), [digestHexOf(info.digest)]);
    assert.deepEqual(await readdir(join(store.root, 'ingest')), []);
  });

  it('rejects a digest mismatch and leaves nothing visible', async () => {
    const store = await freshStore();
    const w = await store.writer({ ref: 'layer-1' });
    await w.write(Buffer.from('actual'));
    const wrong = sha256('expected');
    await assert.rejects(w.commit({ digest: wrong }), (e: unknown) =>
      e instanceof DigestMismatchError && e.expected === wrong && e.actual === sha256('actual'));
    assert.deepEqual(await blobNames(store), []);
    assert.deepEqual(await readdir(join(store.root, 'ingest')), []);
    await assert.rejects(store.writeBlob(Buffer.from('x'), { digest: wrong }), DigestMismatchError);
    assert.deepEqual(await blobNames(store), []);
    await assert.rejects(w.write(Buffer.from('more')), WriterClosedError);
    await w.abort();
  });

  it('rejects a size mismatch and leaves nothing visible', async () => {
    const store = await freshStore();
    const w = await store.writer();
    await w.write(Buffer.from('12345'));
    await assert.rejects(w.commit({ size: 4 }), (e: unknown) =>
      e instanceof SizeMismatchError && e.expected === 4 && e.actual === 5 && e.code === 'FAILED_PRECONDITION');
    assert.deepEqual(await blobNames(store), []);
  });

  it('half-written content is never visible under its digest', async () => {
    const store = await freshStore();
    const w = await store.writer();
    await w.write(Buffer.alloc(300_000, 1));
    assert.deepEqual(await blobNames(store), []);
    const ingests = await readdir(join(store.root, 'ingest'));
    assert.equal(ingests.length, 1);
    await w.abort();
    assert.deepEqual(await readdir(join(store.root, 'ingest')), []);
    assert.deepEqual(await blobNames(store), []);
  });

  it('concurrent writers of the same blob all succeed', async () => {
    const store = await freshStore();
    const data = Buffer.alloc(500_000, 7);
    const results = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const w = await store.writer();
        for (let off = 0; off < data.length; off += 50_000) await w.write(data.subarray(off, off + 50_000));
        return w.commit({ digest: sha256(data) });
      }),
    );
    for (const r of results) assert.deepEqual(r, { digest: sha256(data), size: data.length });
    assert.deepEqual(await blobNames(store), [sha256(data).slice(7)]);
    assert.deepEqual(await readdir(join(store.root, 'ingest')), []);
  });

  it('an explicit ref is locked while a writer holds it', async () => {
    const store = await freshStore();
    const w = await store.writer({ ref: 'same' });
    await assert.rejects(store.writer({ ref: 'same' }), IngestLockedError);
    await w.abort();
    const w2 = await store.writer({ ref: 'same' });
    await w2.write(Buffer.from('ok'));
    assert.equal((await w2.commit()).digest, sha256('ok'));
  });

  it('cleans up crash leftovers and takes over their refs', async () => {
    const store = await freshStore();
    // A child process opens an ingest, writes, and dies without committing (like kill -9).
    const script = `
      import { ContentStore } from ${JSON.stringify(new URL('./content-store.ts', import.meta.url).href)};
      const s = await ContentStore.open(process.argv[1]);
      const w = await s.writer({ ref: 'crashy' });
      await w.write(Buffer.alloc(100000, 3));
      process.kill(process.pid, 'SIGKILL');`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, store.root], { encoding: 'utf8' });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    assert.equal((await readdir(join(store.root, 'ingest'))).length, 1);
    assert.deepEqual(await blobNames(store), []);
    // The dead writer's ref can be reused.
    const w = await store.writer({ ref: 'crashy' });
    await w.abort();
    // Re-create two leftovers: one from a dead pid, one from a live pid that is old.
    spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, store.root]);
    const live = join(store.root, 'ingest', 'b'.repeat(64));
    await mkdir(live);
    await writeFile(join(live, 'owner'), JSON.stringify({ pid: process.ppid, ref: 'old', started: '' }));
    await writeFile(join(live, 'data'), 'partial');
    const active = await store.writer();
    await active.write(Buffer.from('in progress'));
    assert.equal(await store.cleanupIngest(), 1); // only the dead one
    assert.equal((await readdir(join(store.root, 'ingest'))).length, 2);
    const old = new Date(Date.now() - 3_600_000);
    for (const f of ['', 'data', 'owner']) await utimes(join(live, f), old, old);
    assert.equal(await store.cleanupIngest({ olderThanMs: 60_000 }), 1); // the stale one, not ours
    assert.equal((await active.commit()).digest, sha256('in progress'));
    assert.deepEqual(await readdir(join(store.root, 'ingest')), []);
  });

  it('walk lists committed blobs only', async () => {
    const store = await freshStore();
    const a = await store.writeBlob(Buffer.from('a'));
    const b = await store.writeBlob(Buffer.from('bb'));
    await store.writeBlob(Buffer.from('bb')); // existing blob counts as success
    const w = await store.writer();
    await w.write(Buffer.from('pending'));
    await writeFile(join(store.root, 'blobs', 'sha256', 'not-a-digest'), 'x');
    const seen: { digest: Digest; size: number }[] = [];
    for await (const i of store.walk()) seen.push(i);
    assert.deepEqual(seen.sort((x, y) => x.digest.localeCompare(y.digest)), [a, b].sort((x, y) => x.digest.localeCompare(y.digest)));
    await w.abort();
  });
});
