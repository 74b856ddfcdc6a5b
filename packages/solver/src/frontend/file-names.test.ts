/**
 * A file name that is not UTF-8, in the context or written by a RUN step, fails the build
 * at the instruction's line with the name's bytes escaped. Before, the context walk left
 * the file out and a RUN step's layer held it under a changed name (U+FFFD).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BuildError } from '../errors.js';
import { build } from '../index.js';
import { requireBuildPrereqs, tempStoreWithBusybox, type TestStore } from '../test-helpers/store.js';

describe('file names that are not UTF-8', { concurrency: false }, () => {
  let ts: TestStore;
  let ctx: string;
  let dfDir: string;
  let ok = true;

  before(async (c) => {
    ok = requireBuildPrereqs(c as unknown as { skip(m: string): void });
    if (!ok) return;
    ts = await tempStoreWithBusybox();
    ctx = await mkdtemp(join(tmpdir(), 'tsbuild-names-'));
    dfDir = await mkdtemp(join(tmpdir(), 'tsbuild-names-df-'));
    await mkdir(join(ctx, 'd'));
    await writeFile(join(ctx, 'd/plain'), 'p\n');
  });
  after(async () => {
    if (!ok) return;
    await ts.cleanup();
    await rm(ctx, { recursive: true, force: true });
    await rm(dfDir, { recursive: true, force: true });
  });

  const fails = async (dockerfile: string, message: RegExp, line: number): Promise<void> => {
    const df = join(dfDir, 'Dockerfile');
    await writeFile(df, dockerfile);
    await assert.rejects(build(ts.store, { context: ctx, dockerfile: df }), (e: unknown) => {
      assert.ok(e instanceof BuildError, String(e));
      assert.match(e.message, message);
      assert.equal(e.location?.line, line);
      return true;
    });
  };

  it('a context file: the COPY fails naming it, nothing is left out silently', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const bad = Buffer.concat([Buffer.from(join(ctx, 'd/')), Buffer.from('lat\xe9in', 'latin1')]);
    await writeFile(bad, 'l\n');
    try {
      await fails('FROM busybox:local\nCOPY d /d/\n', /^the file name "d\/lat\\xe9in" is not valid UTF-8/, 2);
    } finally {
      await rm(bad);
    }
  });

  it('a context symlink whose target is not UTF-8: the COPY fails naming it', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const l = join(ctx, 'd/link');
    await symlink(Buffer.from('lat\xe9in', 'latin1'), l);
    try {
      await fails('FROM busybox:local\nRUN true\nCOPY d /d/\n', /^the target "lat\\xe9in" of the symlink "d\/link" is not valid UTF-8/, 3);
    } finally {
      await rm(l);
    }
  });

  it('a name a RUN step wrote: the step fails at its line', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    await fails('FROM busybox:local\nRUN echo ok > /ok\nRUN mkdir /n && echo x > "/n/$(printf \'lat\\351in\')"\n', /^the file name "n\/lat\\xe9in" is not valid UTF-8/, 3);
  });

  it('a symlink target a RUN step wrote: the step fails at its line', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    await fails('FROM busybox:local\nRUN ln -s "$(printf \'lat\\351in\')" /l\n', /^the target "lat\\xe9in" of the symlink "l" is not valid UTF-8/, 2);
  });
});
