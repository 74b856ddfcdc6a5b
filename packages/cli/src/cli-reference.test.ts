import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { it } from 'node:test';
import { REPO_ROOT } from './test/cli-helpers.js';

it('the README CLI reference is what commander prints (run node scripts/cli-reference.mjs after changing a command)', () => {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'cli-reference.mjs'), '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});
