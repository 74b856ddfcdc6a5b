import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cachedRuncVersionOutput, checkRuncVersion, parseRuncVersion } from './runtime-check.js';

const debian = `runc version 1.1.5+ds1
commit: 1.1.5+ds1-1+deb12u1
spec: 1.0.2-dev
go: go1.19.8
libseccomp: 2.5.4
`;
const changelog = `runc (1.1.5+ds1-1+deb12u1) bookworm-security; urgency=high

  * CVE-2024-21626: several container breakouts due to internally leaked fds

runc (1.0.0~rc93+ds1-5) unstable; urgency=medium

  * Backport patch for CVE-2021-30465 (Closes: #988768)
`;

test('parseRuncVersion handles releases, rcs and build metadata', () => {
  assert.deepEqual(parseRuncVersion('1.1.5+ds1'), { major: 1, minor: 1, patch: 5, rc: undefined });
  assert.deepEqual(parseRuncVersion('1.0.0-rc95'), { major: 1, minor: 0, patch: 0, rc: 95 });
  assert.deepEqual(parseRuncVersion('1.2.0-rc.1'), { major: 1, minor: 2, patch: 0, rc: 1 });
  assert.equal(parseRuncVersion('garbage'), undefined);
});

test('checkRuncVersion: upstream versions', () => {
  assert.deepEqual(checkRuncVersion('runc version 1.1.12\ncommit: v1.1.12-0-g51d5e946\n').vulnerable, []);
  assert.deepEqual(checkRuncVersion('runc version 1.2.5\n').vulnerable, []);
  assert.deepEqual(checkRuncVersion('runc version 1.1.11\n').vulnerable, ['CVE-2024-21626']);
  assert.deepEqual(checkRuncVersion('runc version 1.0.0-rc93\n').vulnerable, ['CVE-2021-30465', 'CVE-2024-21626']);
  assert.deepEqual(checkRuncVersion('runc version 1.0.0-rc95\n').vulnerable, ['CVE-2024-21626']);
  assert.equal(checkRuncVersion('not runc').vulnerable.length, 1);
});

test('checkRuncVersion: Debian backport accepted only for the exact build its changelog describes', () => {
  const ok = checkRuncVersion(debian, changelog);
  assert.equal(ok.version, '1.1.5+ds1');
  assert.deepEqual(ok.affected, ['CVE-2024-21626']);
  assert.deepEqual(ok.patchedByDistro, ['CVE-2024-21626']);
  assert.deepEqual(ok.vulnerable, []);
  // Same version, but the changelog's top entry is the unpatched build: refuse.
  const old = changelog.replace('1.1.5+ds1-1+deb12u1', '1.1.5+ds1-1');
  assert.deepEqual(checkRuncVersion(debian, old).vulnerable, ['CVE-2024-21626']);
  // A runc that is not the packaged one (upstream commit line) ignores the changelog.
  assert.deepEqual(checkRuncVersion('runc version 1.1.5\ncommit: v1.1.5-0-gf19387a6\n', changelog).vulnerable, ['CVE-2024-21626']);
  // No changelog at all.
  assert.deepEqual(checkRuncVersion(debian).vulnerable, ['CVE-2024-21626']);
});

test('cachedRuncVersionOutput asks the binary once, and again when the binary changes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'runc-version-'));
  try {
    // a stand-in runc that counts its runs
    const runc = join(dir, 'runc');
    const script = (v: string): string => `#!/bin/sh\necho x >> ${join(dir, 'runs')}\necho "runc version ${v}"\n`;
    await writeFile(runc, script('1.1.12'));
    await chmod(runc, 0o755);
    const cache = join(dir, 'runc-version.json');
    const runs = async (): Promise<number> => (await readFile(join(dir, 'runs'), 'utf8')).split('\n').filter(Boolean).length;
    assert.equal(await cachedRuncVersionOutput(runc, cache), 'runc version 1.1.12\n');
    assert.equal(await cachedRuncVersionOutput(runc, cache), 'runc version 1.1.12\n');
    assert.equal(await runs(), 1, 'the second call is answered from the record');
    // replaced by another version (new size and ctime): asked again, and the old answer is not used
    await writeFile(runc, script('1.1.11-replaced'));
    assert.equal(await cachedRuncVersionOutput(runc, cache), 'runc version 1.1.11-replaced\n');
    assert.equal(await runs(), 2);
    // a corrupt record is ignored
    await writeFile(cache, '{oops');
    assert.equal(await cachedRuncVersionOutput(runc, cache), 'runc version 1.1.11-replaced\n');
    assert.equal(await runs(), 3);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
