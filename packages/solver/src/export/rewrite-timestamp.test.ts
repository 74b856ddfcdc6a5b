import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, utimes, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { readTar } from '@tsbuild/snapshotter';
import { ClampMtimes } from './rewrite-timestamp.js';

async function clamp(tar: Buffer, epoch: number): Promise<{ out: Buffer; changed: number }> {
  const t = new ClampMtimes(epoch);
  const chunks: Buffer[] = [];
  // feed in odd-sized chunks so headers straddle chunk boundaries
  const parts: Buffer[] = [];
  for (let i = 0; i < tar.length; i += 333) parts.push(tar.subarray(i, i + 333));
  Readable.from(parts).pipe(t);
  for await (const c of t) chunks.push(c as Buffer);
  return { out: Buffer.concat(chunks), changed: t.changed };
}

async function entries(tar: Buffer): Promise<{ path: string; mtime: number; body: string }[]> {
  const out: { path: string; mtime: number; body: string }[] = [];
  for await (const e of readTar(Readable.from([tar]))) {
    let body = '';
    for await (const c of e.body) body += c.toString();
    out.push({ path: e.path, mtime: e.mtime, body });
  }
  return out;
}

describe('ClampMtimes (rewrite-timestamp)', () => {
  it('clamps ustar and PAX mtimes above the epoch, keeps older ones and every byte of content', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tsbuild-clamp-'));
    try {
      await mkdir(join(dir, 'd'));
      await writeFile(join(dir, 'd', 'new.txt'), 'new content\n');
      await writeFile(join(dir, 'old.txt'), 'x'.repeat(1000));
      await writeFile(join(dir, `${'long-name-'.repeat(12)}.txt`), 'long\n');
      await utimes(join(dir, 'old.txt'), 1000, 1000);
      await utimes(join(dir, 'd', 'new.txt'), 2_000_000_000.5, 2_000_000_000.5);
      for (const format of ['ustar', 'posix']) {
        const args = ['-C', dir, '--format', format, '--sort=name', '-cf', '-', '.'];
        if (format === 'posix') args.splice(4, 0, '--pax-option=mtime:=2000000000.5');
        const tar = spawnSync('tar', args, { maxBuffer: 1 << 24 }).stdout;
        assert.ok(tar.length > 0);
        const { out, changed } = await clamp(tar, 1_500_000_000);
        assert.equal(out.length, tar.length, 'same length: nothing moved');
        const before = await entries(tar);
        const after = await entries(out);
        assert.deepEqual(after.map((e) => [e.path, e.body]), before.map((e) => [e.path, e.body]));
        for (const [i, e] of after.entries()) {
          assert.equal(e.mtime, Math.min(before[i].mtime, 1_500_000_000), `${format} ${e.path}`);
        }
        assert.ok(changed >= 1);
        const again = await clamp(out, 1_500_000_000);
        assert.equal(again.changed, 0, 'idempotent');
        assert.ok(again.out.equals(out));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects a stream that is not a tar', async () => {
    await assert.rejects(clamp(Buffer.alloc(1024, 7), 0), /not a valid tar/);
  });
});
