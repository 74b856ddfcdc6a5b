/**
 * hashEntries (the hash-only export) gives the sha256 and length of exactly the bytes
 * packEntries writes, with the addon (two threads reading and hashing in C) and without
 * it, and fails the same way on a file that changed, a symlink in a file's place and an
 * abort.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { native, setNativeEnabled } from '../util/native.js';
import type { TarEntry } from './types.js';
import { hashEntries, packEntries } from './writer.js';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hash-entries-'));
});
after(async () => {
  setNativeEnabled(true);
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, data: Buffer): Promise<TarEntry> {
  await writeFile(join(dir, name), data);
  return { path: `d/${name}`, type: 'file', mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: 1_700_000_000, source: join(dir, name) };
}

/** Sizes around the 512-byte padding and the 1 MiB chunks, names that need PAX, links, xattrs. */
async function sampleEntries(): Promise<TarEntry[]> {
  const text = Buffer.from('layer digest cache '.repeat(200_000)); // 3.8 MB, not a multiple of 512
  return [
    { path: 'd', type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 1_700_000_000 },
    await file('empty', Buffer.alloc(0)),
    await file('one', Buffer.from('x')),
    await file('block', randomBytes(512)),
    await file('chunk', randomBytes(1 << 20)),
    await file('chunk-plus', randomBytes((1 << 20) + 1)),
    await file('text', text),
    await file('big', randomBytes(9 * (1 << 20) + 77)),
    { ...(await file('x'.repeat(150), randomBytes(700))), uid: 70_000_000, xattrs: new Map([['security.capability', Buffer.from([1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0])]]) },
    { path: 'd/hard', type: 'link', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1_700_000_000, linkname: 'd/one' },
    { path: 'd/sym', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 1_700_000_000, linkname: '../d/é'.repeat(40) },
  ];
}

async function packed(entries: TarEntry[]): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of packEntries(entries)) {
    h.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { digest: h.digest('hex'), size };
}

test('the addon has hashTar', () => {
  setNativeEnabled(true);
  const sys = native();
  assert.ok(sys, 'build/Release/tsbuild_sys.node is missing: run `npm ci` (needs gcc, make, python3)');
  assert.equal(typeof sys.hashTar, 'function');
});

for (const useNative of [true, false]) {
  const path = useNative ? 'addon' : 'js';

  test(`${path}: the digest and size of packEntries' bytes`, async () => {
    const entries = await sampleEntries();
    const want = await packed(entries);
    setNativeEnabled(useNative);
    assert.deepEqual(await hashEntries(entries), want);
    assert.deepEqual(await hashEntries([]), await packed([]), 'an empty tar is its end blocks');
  });

  test(`${path}: a file that grew or shrank since the scan fails the hash`, async () => {
    const grown = await file('grown', Buffer.from('12345'));
    const shrunk = await file('shrunk', Buffer.from('12345'));
    await appendFile(grown.source!, '6');
    await truncate(shrunk.source!, 2);
    setNativeEnabled(useNative);
    await assert.rejects(hashEntries([grown]), { message: `file ${grown.source} changed while archiving: expected 5 bytes, found more` });
    await assert.rejects(hashEntries([shrunk]), { message: `file ${shrunk.source} changed while archiving: expected 5 bytes, found 2` });
  });

  test(`${path}: a symlink where the file was is not followed`, async () => {
    const e = await file('target', Buffer.from('secret'));
    await symlink(e.source!, join(dir, `swapped-${path}`));
    setNativeEnabled(useNative);
    await assert.rejects(hashEntries([{ ...e, source: join(dir, `swapped-${path}`) }]), { code: 'ELOOP' });
    await assert.rejects(hashEntries([{ ...e, source: join(dir, 'missing') }]), { code: 'ENOENT' });
  });

  test(`${path}: an abort stops the hash with the signal's reason`, async () => {
    const entries = await sampleEntries();
    setNativeEnabled(useNative);
    const ac = new AbortController();
    const p = hashEntries([...entries, ...entries, ...entries], { signal: ac.signal });
    ac.abort(new Error('stop here'));
    await assert.rejects(p, { message: 'stop here' });
    await assert.rejects(hashEntries(entries, { signal: ac.signal }), { message: 'stop here' }, 'an aborted signal fails at once');
  });
}
