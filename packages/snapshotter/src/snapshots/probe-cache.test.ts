import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { privilegedSkip } from '../testsuite/privileged.js';
import { openSnapshotter } from './snapshotter.js';

const skip = privilegedSkip({ mount: 'mount' });

test('the overlay probe is remembered per boot and re-done when its record is stale or corrupt', { skip }, async () => {
  const root = await mkdtemp(join(tmpdir(), 'probe-cache-'));
  try {
    const first = await openSnapshotter(root);
    assert.equal(first.backend, 'overlay');
    // a committed parent, so that a child's mounts are an overlay with its options
    await first.prepare('base-active', undefined);
    await first.commit('base', 'base-active');
    await first.close();
    const file = join(root, 'overlay-probe.json');
    const saved = JSON.parse(await readFile(file, 'utf8')) as { key: string; options: string[] };
    assert.ok(Array.isArray(saved.options));
    const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    assert.ok(saved.key.includes(bootId), 'the record is keyed by the boot');

    // a remembered result is used as is (a marker option proves the probe was skipped)
    await writeFile(file, JSON.stringify({ key: saved.key, options: [...saved.options, 'marker=1'] }));
    const second = await openSnapshotter(root);
    assert.equal(second.backend, 'overlay');
    assert.ok(JSON.stringify(await second.prepare('m', 'base')).includes('marker=1'));
    await second.remove('m');
    await second.close();

    // a record of another boot, or garbage, makes it probe again and rewrite the record
    for (const stale of [JSON.stringify({ key: 'another boot', options: ['bogus=1'] }), '{not json']) {
      await writeFile(file, stale);
      const s = await openSnapshotter(root);
      assert.equal(s.backend, 'overlay');
      const mounts = await s.prepare('k', 'base');
      assert.ok(!JSON.stringify(mounts).includes('bogus=1'), 'stale options are not used');
      await s.remove('k');
      await s.close();
      assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), saved);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
