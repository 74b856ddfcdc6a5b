import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { MetaStore } from './metadata.js';

test('snapshot ids: reserved in blocks, never handed out twice across instances and restarts', async () => {
  const root = await mkdtemp(join(tmpdir(), 'meta-ids-'));
  try {
    const a = new MetaStore(root);
    const b = new MetaStore(root);
    await a.init();
    const seen = new Set<string>();
    const take = async (m: MetaStore): Promise<string> => {
      const id = await m.withLock(() => m.nextId());
      assert.ok(!seen.has(id), `id ${id} handed out twice`);
      seen.add(id);
      return id;
    };
    await take(a);
    const counter = await readFile(join(root, 'next-id'), 'utf8');
    // more ids from the same block leave the durable counter alone
    for (let i = 0; i < 5; i++) await take(a);
    assert.equal(await readFile(join(root, 'next-id'), 'utf8'), counter, 'one counter write per block');
    // two instances on one root interleave without overlap, through several blocks each
    await Promise.all([...Array(80).keys()].map((i) => take(i % 2 ? a : b)));
    // a restart (a new instance: the rest of the old blocks is lost) continues past every id given
    const c = new MetaStore(root);
    const max = Math.max(...[...seen].map((id) => parseInt(id, 36)));
    const next = parseInt(await take(c), 36);
    assert.ok(next > max, `after a restart: ${next} > ${max}`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('a staged committed record is invisible until published; temps of dead processes are removed', async () => {
  const root = await mkdtemp(join(tmpdir(), 'meta-stage-'));
  try {
    const m = new MetaStore(root);
    await m.init();
    const rec = { key: 'c', kind: 'committed' as const, created: new Date(0).toISOString(), labels: {}, id: '1' };
    const staged = await m.stage(rec);
    assert.equal(await m.get('c'), undefined, 'not visible before publish');
    await m.withLock(() => staged.publish());
    await staged.settle();
    assert.deepEqual(await m.get('c'), rec);
    const dropped = await m.stage({ ...rec, key: 'd' });
    await dropped.discard();
    assert.deepEqual((await readdir(join(root, 'metadata'))).filter((n) => n.startsWith('.tmp-')), [], 'discard leaves no temp');

    // a crashed committer's temp (pid 2^22 + 1 is above pid_max's default ceiling: never alive) goes; a live one's stays
    await writeFile(join(root, 'metadata', `.tmp-${2 ** 22 + 1}-dead`), '{}');
    await writeFile(join(root, 'metadata', `.tmp-${process.pid}-mine`), '{}');
    await m.removeDeadTemps();
    assert.deepEqual((await readdir(join(root, 'metadata'))).filter((n) => n.startsWith('.tmp-')), [`.tmp-${process.pid}-mine`]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
