/**
 * The CLI as a user drives it (issue 7): spawned `tsbuild` processes on a real store —
 * plain output snapshot (times masked), the live view on a real pseudo-terminal
 * (util-linux `script`), cache ls/du/inspect/prune (bytes reported = bytes freed on
 * disk; nothing a running build holds is removed), `layers` wasted bytes, `diff`,
 * `why` after a one-file edit, contexts from stdin and git, metadata files, and the
 * usage errors (exit code 2).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN, hasCommand, REPO_ROOT, requirePrereq, requireRoot, storeWithBusybox, tsbuild } from './test/cli-helpers.js';

/** Allocated bytes under the store's blob and snapshot directories (what `du -B1` counts). */
function diskBytes(root: string): number {
  const r = spawnSync('du', ['-sB1', '--', join(root, 'blobs'), join(root, 'snapshots')], { encoding: 'utf8' });
  return r.stdout
    .trim()
    .split('\n')
    .reduce((s, l) => s + Number(l.split('\t')[0]), 0);
}

async function context(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-ux-ctx-'));
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  return dir;
}

describe('tsbuild CLI: usage errors exit 2 with one line', () => {
  const cases: [string[], RegExp][] = [
    [['build', '--push', '.'], /--push needs a name to push to/],
    [['build', '--cache-from', 'type=s3,bucket=x', '.'], /invalid --cache-from "type=s3,bucket=x": expected type=registry or type=local/],
    [['build', '-q', '--progress=plain', '.'], /conflicting options: -q\/--quiet and --progress=plain/],
    [['build', '-f', '-', '-'], /cannot both come from stdin/],
    [['build', '-o', 'type=oci,dest=x.tar,bogus=1', '.'], /unknown --output attribute "bogus"/],
    [['build', '-o', 'type=oci,dest=x.tar,rewrite-timestamp=true', '.'], /rewrite-timestamp=true needs SOURCE_DATE_EPOCH/],
    [['build', '--progress=fancy', '.'], /argument 'fancy' is invalid/],
    [['cache', 'prune', '--filter', 'type=regular'], /invalid --filter "type=regular": expected until=DURATION/],
    [['cache', 'prune', '--filter', 'until=yesterday'], /expected a duration/],
    [['cache', 'prune', '--keep-storage', '10XB'], /expected a size such as 10GB/],
    [['cache', 'frobnicate'], /unknown command 'frobnicate'/],
  ];
  for (const [args, msg] of cases) {
    it(`tsbuild ${args.join(' ')}`, async () => {
      const r = await tsbuild(join(tmpdir(), 'tsbuild-ux-nostore'), args, { env: { SOURCE_DATE_EPOCH: '' } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, msg);
      assert.equal(r.stderr.trim().split('\n').length <= 2, true, r.stderr);
    });
  }
});

describe('tsbuild CLI: builds, progress, cache and image inspection', { concurrency: false }, () => {
  let root = '';
  let cleanup = async (): Promise<void> => {};
  let ok = false;
  const dirs: string[] = [];

  before(async (t) => {
    ok = requireRoot(t) && requirePrereq(t, hasCommand('busybox'), 'busybox', 'busybox-static') && requirePrereq(t, hasCommand('runc'), 'runc', 'runc');
    if (!ok) return;
    ({ root, cleanup } = await storeWithBusybox());
  });
  after(async () => {
    if (!ok) return;
    await cleanup();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('--progress=plain matches the snapshot (times, ids and the sandbox masked)', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const ctx = await context({
      Dockerfile: 'FROM busybox:local AS base\nWORKDIR /app\nCOPY greeting.txt .\nRUN cat greeting.txt && echo two lines\n',
      'greeting.txt': 'hello plain\n',
    });
    dirs.push(ctx);
    const mask = (s: string): string =>
      s
        .replace(/^(#\d+) \d+\.\d+ /gm, '$1 T ')
        .replace(/\d+(\.\d+)?s\b/g, 'Xs')
        .replace(/isolation: \w+/g, 'isolation: SANDBOX')
        .replace(/sha256:[0-9a-f]{64}/g, 'sha256:DIGEST')
        .replace(/exporting layer [0-9a-f]{12} .*$/gm, 'exporting layer ID BYTES')
        .replace(/^built in .*$/m, 'built in Xs');
    const first = await tsbuild(root, ['build', '-t', 'ux/plain', '--progress=plain', ctx]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(
      mask(first.stderr),
      [
        '',
        '#1 [base 1/4] FROM busybox:local',
        '#1 CACHED',
        '',
        '#2 [base 2/4] WORKDIR /app',
        '#2 MISS no earlier build of this step in the cache',
        '#2 exporting layer ID BYTES',
        '#2 DONE Xs',
        '',
        '#3 [base 3/4] COPY greeting.txt .',
        '#3 MISS no earlier build of this step in the cache',
        '#3 exporting layer ID BYTES',
        '#3 DONE Xs',
        '',
        '#4 [base 4/4] RUN cat greeting.txt && echo two lines',
        '#4 MISS no earlier build of this step in the cache',
        '#4 isolation: SANDBOX',
        '#4 T hello plain',
        '#4 T two lines',
        '#4 exporting layer ID BYTES',
        '#4 DONE Xs',
        '',
        '#5 exporting to image',
        '#5 DONE Xs',
        '',
        'built in Xs',
        'writing image sha256:DIGEST done',
        'naming to ux/plain done',
        '',
      ].join('\n'),
    );
    const again = await tsbuild(root, ['build', '-t', 'ux/plain', '--progress=plain', ctx]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((again.stderr.match(/^#\d+ CACHED$/gm) ?? []).length, 4, again.stderr);
    assert.match(again.stderr, /^built in [\d.]+s: 3 steps, 3 cached$/m);
  });

  it('draws the live view on a real terminal: running steps, collapsed cached steps, summary', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    if (!requirePrereq(t, hasCommand('script'), 'script', 'util-linux')) return;
    const ctx = await context({ Dockerfile: 'FROM busybox:local\nCOPY a.txt /a.txt\nRUN echo tty-one; sleep 0.5; echo tty-two\n', 'a.txt': 'a\n' });
    dirs.push(ctx);
    const cmd = `${process.execPath} ${BIN} build -t ux/tty ${ctx}`;
    const run = (): { code: number | null; out: string } => {
      const r = spawnSync('script', ['-qfec', cmd, '/dev/null'], { cwd: REPO_ROOT, env: { ...process.env, TSBUILD_ROOT: root, COLUMNS: '120' }, encoding: 'utf8' });
      return { code: r.status, out: r.stdout };
    };
    const first = run();
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, /\x1b\[2K\[\+\] Building \d+\.\ds \(\d+\/\d+\)/, 'redraws in place');
    assert.match(first.out, /FINISHED/);
    assert.match(first.out, /=> \[stage-0 3\/3\] RUN echo tty-one; sleep 0\.5; echo tty-two +\d+\.\ds/, 'a running step with its elapsed time');
    assert.match(first.out, / > tty-one/, 'the last lines of its output');
    assert.match(first.out, / => miss: no earlier build of this step in the cache/);
    assert.match(first.out, /built in [\d.]+s: 2 steps, 0 cached/);
    const second = run();
    assert.equal(second.code, 0, second.out);
    assert.match(second.out, /=> CACHED 3 steps: \[stage-0 1\/3\] FROM busybox:local, \[stage-0 2\/3\] COPY a\.txt \/a\.txt, \[stage-0 3\/3\] RUN/);
    assert.match(second.out, /built in [\d.]+s: 2 steps, 2 cached/);
    assert.match(second.out, /^cached: \[stage-0 1\/3\] FROM busybox:local, /m);
  });

  it('layers: a 10 MB file written then deleted in the next step is 10 MB wasted', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const ctx = await context({ Dockerfile: 'FROM busybox:local\nRUN dd if=/dev/zero of=/big bs=1M count=10 2>/dev/null\nRUN rm /big\nRUN echo small > /small\n' });
    dirs.push(ctx);
    const b = await tsbuild(root, ['build', '-q', '-t', 'ux/waste', ctx]);
    assert.equal(b.code, 0, b.stderr);
    const r = await tsbuild(root, ['layers', 'ux/waste', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as { wasted: number; efficiency: number; totalContent: number; layers: { instruction: string; added: number; removed: number; contentSize: number }[]; wastedFiles: { path: string; size: number }[] };
    assert.equal(rep.wasted, 10 * 1024 * 1024);
    assert.deepEqual(rep.wastedFiles.map((w) => [w.path, w.size]), [['big', 10 * 1024 * 1024]]);
    assert.equal(rep.layers.length, 4);
    assert.match(rep.layers[1].instruction, /dd if=\/dev\/zero of=\/big/);
    assert.equal(rep.layers[1].added, 1);
    assert.equal(rep.layers[1].contentSize, 10 * 1024 * 1024);
    assert.equal(rep.layers[2].removed, 1);
    assert.ok(Math.abs(rep.efficiency - (rep.totalContent - rep.wasted) / rep.totalContent) < 1e-9);
    const text = await tsbuild(root, ['layers', 'ux/waste']);
    assert.match(text.stdout, /^#\s+DIGEST\s+SIZE\s+CONTENT\s+ADDED\s+CHANGED\s+REMOVED\s+INSTRUCTION$/m);
    assert.match(text.stdout, /^Wasted space:\s+10\.5MB \(10485760 bytes\)$/m);
    assert.match(text.stdout, /^1\s+10\.5MB\s+1\s+\/big$/m);
  });

  it('diff: two images as a file list with change kinds and sizes', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const r = await tsbuild(root, ['diff', 'busybox:local', 'ux/waste', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse(r.stdout) as { mode: string; changes: { path: string; kind: string; sizeB?: number }[] };
    assert.equal(d.mode, 'image');
    assert.deepEqual(d.changes.filter((c) => c.path === 'small'), [{ path: 'small', kind: 'added', type: 'file', sizeB: 6 }]);
    assert.equal(d.changes.some((c) => c.path === 'big'), false, 'the deleted file is in neither final filesystem');
    const text = await tsbuild(root, ['diff', 'busybox:local', 'ux/waste']);
    assert.match(text.stdout, /^added\s+file\s+-\s+6B\s+\/small$/m);
    const bad = await tsbuild(root, ['diff', 'busybox:local', 'nope:none']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /"nope:none" not found/);
  });

  it('why names the file that changed after a one-file edit, as text and json; build --explain too', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const ctx = await context({ Dockerfile: 'FROM busybox:local\nCOPY src/ /src/\nRUN cat /src/a.ts /src/b.ts > /all\n', 'src/a.ts': 'export const a = 1;\n', 'src/b.ts': 'export const b = 2;\n' });
    dirs.push(ctx);
    assert.equal((await tsbuild(root, ['build', '-q', ctx])).code, 0);
    await writeFile(join(ctx, 'src', 'a.ts'), 'export const a = 2;\n');
    const b = await tsbuild(root, ['build', '--progress=plain', '--explain', ctx]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /^MISS   \[stage-0 2\/3\] COPY src\/ \/src\/\n {7}file src\/a\.ts changed$/m);
    assert.match(b.stdout, /^MISS   \[stage-0 3\/3\] RUN cat .*\n {7}parent step missed the cache$/m);
    const why = await tsbuild(root, ['why', ctx]);
    assert.equal(why.code, 0, why.stderr);
    assert.match(why.stdout, /file src\/a\.ts changed/);
    assert.doesNotMatch(why.stdout, /b\.ts changed/);
    const j = JSON.parse((await tsbuild(root, ['why', join(ctx, 'Dockerfile'), '--format', 'json'])).stdout) as { steps: { cached: boolean; reason?: string }[] };
    assert.equal(j.steps.find((s) => !s.cached)?.reason, 'file src/a.ts changed');
  });

  it('builds a context from a tar on stdin and from a git URL; writes iidfile and buildx metadata', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    if (!requirePrereq(t, hasCommand('git'), 'git', 'git')) return;
    const ctx = await context({ Dockerfile: 'FROM busybox:local\nCOPY hello.txt /hello.txt\n', 'hello.txt': 'from a context\n', 'sub/Dockerfile': 'FROM busybox:local\nCOPY x /x\n', 'sub/x': 'x\n' });
    dirs.push(ctx);
    const tar = spawnSync('tar', ['-C', ctx, '-c', '.']).stdout;
    const meta = join(ctx, 'meta.json');
    const iid = join(ctx, 'iid');
    const fromStdin = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [BIN, 'build', '-q', '-t', 'ux/stdin', '--iidfile', iid, '--metadata-file', meta, '-'], { env: { ...process.env, TSBUILD_ROOT: root }, cwd: REPO_ROOT });
      let stderr = '';
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('close', (code) => resolve({ code, stderr }));
      p.stdin.end(tar);
    });
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    const m = JSON.parse(await readFile(meta, 'utf8')) as Record<string, unknown>;
    const listed = JSON.parse((await tsbuild(root, ['images', '--format', 'json'])).stdout) as { familiar: string; digest: string }[];
    assert.equal(m['containerimage.digest'], listed.find((i) => i.familiar === 'ux/stdin:latest')?.digest);
    assert.equal(m['containerimage.config.digest'], await readFile(iid, 'utf8'));
    assert.equal(m['image.name'], 'ux/stdin');
    assert.match(String(m['buildx.build.ref']), /^tsbuild\/local\/\d+$/);
    assert.deepEqual(Object.keys(m['containerimage.descriptor'] as object).sort(), ['digest', 'mediaType', 'size']);

    const repo = join(ctx, 'repo.git');
    const git = (...args: string[]): void => {
      const r = spawnSync('git', ['-c', 'user.email=t@example.com', '-c', 'user.name=t', '-c', 'init.defaultBranch=main', ...args], { cwd: repo, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    };
    await mkdir(repo);
    git('init', '-q');
    await writeFile(join(repo, 'Dockerfile'), 'FROM busybox:local\nCOPY msg /msg\n');
    await writeFile(join(repo, 'msg'), 'from git\n');
    git('add', '.');
    git('commit', '-q', '-m', 'one');
    const r = await tsbuild(root, ['build', '-q', '-t', 'ux/git', `file://${repo}#main`]);
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse((await tsbuild(root, ['diff', 'busybox:local', 'ux/git', '--format', 'json'])).stdout) as { changes: { path: string; kind: string }[] };
    assert.deepEqual(d.changes.map((c) => `${c.kind} ${c.path}`), ['added msg']);
    const bad = await tsbuild(root, ['build', '-q', `file://${repo}#no-such-branch`]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /git fetch failed/);
  });

  it('refuses a context tar that escapes its directory', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const ctx = await context({ Dockerfile: 'FROM busybox:local\n' });
    dirs.push(ctx);
    // a symlink to / then a file written through it
    const evil = join(ctx, 'evil');
    await mkdir(evil);
    spawnSync('ln', ['-s', '/', join(evil, 'up')]);
    await writeFile(join(ctx, 'payload'), 'pwned\n');
    const tarFile = join(ctx, 'evil.tar');
    assert.equal(spawnSync('tar', ['-C', ctx, '-cf', tarFile, 'Dockerfile', '-C', evil, 'up']).status, 0);
    assert.equal(spawnSync('tar', ['-C', ctx, '-rf', tarFile, '--transform', 's,^payload$,up/tmp/tsbuild-ux-pwned,', 'payload']).status, 0);
    const p = spawnSync(process.execPath, [BIN, 'build', '-q', '-'], { input: await readFile(tarFile), env: { ...process.env, TSBUILD_ROOT: root }, encoding: 'utf8' });
    assert.equal(p.status, 1, p.stderr);
    assert.match(p.stderr, /which is not a directory/);
    assert.equal(existsSync('/tmp/tsbuild-ux-pwned'), false);
  });

  it('cache ls/du/inspect describe the records; prune frees exactly what it reports', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const ls = JSON.parse((await tsbuild(root, ['cache', 'ls', '--format', 'json'])).stdout) as { id: string; description: string; size: number; shared: boolean; reclaimable: boolean; layer?: { digest: string } }[];
    const big = ls.find((r) => r.description.includes('dd if=/dev/zero'));
    assert.ok(big, 'the 10 MB step is a record');
    assert.ok(big.size >= 10 * 1024 * 1024, `size ${big.size}`);
    assert.equal(big.shared, true, 'ux/waste uses its layer');
    const table = await tsbuild(root, ['cache', 'ls']);
    assert.match(table.stdout, /^ID\s+DESCRIPTION\s+SIZE\s+CREATED\s+LAST USED\s+USAGE\s+SHARED\s+RECLAIMABLE$/m);
    const insp = JSON.parse((await tsbuild(root, ['cache', 'inspect', big.id.slice(7, 19), '--format', 'json'])).stdout) as { images: string[]; components: { op: string; parent: string }; layer: { digest: string }; parentInCache: boolean };
    assert.deepEqual(insp.images, ['ux/waste:latest']);
    assert.match(insp.components.op, /dd if=\/dev\/zero/);
    const text = await tsbuild(root, ['cache', 'inspect', big.id]);
    assert.match(text.stdout, /^Images:\s+ux\/waste:latest$/m);
    assert.match(text.stdout, new RegExp(`^Layer:\\s+${big.layer!.digest}`, 'm'));
    const du = await tsbuild(root, ['cache', 'du']);
    assert.match(du.stdout, /^Total:\s+[\d.]+[kMG]?B$/m);
    assert.match(du.stdout, /^Reclaimable:/m);

    assert.equal((await tsbuild(root, ['rmi', 'ux/waste'])).code, 0);
    const before = diskBytes(root);
    const dry = JSON.parse((await tsbuild(root, ['cache', 'prune', '--dry-run', '--format', 'json'])).stdout) as { reclaimed: number; records: { id: string }[]; blobs: unknown[] };
    assert.ok(dry.records.some((r) => r.id === big.id));
    assert.equal(diskBytes(root), before, 'a dry run removes nothing');
    const pruned = await tsbuild(root, ['cache', 'prune', '--format', 'json']);
    assert.equal(pruned.code, 0, pruned.stderr);
    const res = JSON.parse(pruned.stdout) as { reclaimed: number; records: { id: string }[]; blobs: { digest: string }[]; snapshots: unknown[] };
    const freed = before - diskBytes(root);
    assert.ok(res.reclaimed >= 10 * 1024 * 1024, `reclaimed ${res.reclaimed}`);
    // what prune reports is what the disk freed, give or take a few blocks of the snapshotter's
    // own bookkeeping (metadata and lock files, directory blocks) that no record accounts for
    assert.ok(Math.abs(freed - res.reclaimed) <= 16 * 4096, `reported ${res.reclaimed} bytes, the disk freed ${freed}`);
    assert.equal(dry.records.length, res.records.length);
    assert.ok(res.blobs.some((b) => b.digest === big.layer!.digest));
    // images still work: nothing they use was removed
    const again = await tsbuild(root, ['layers', 'ux/plain', '--format', 'json']);
    assert.equal(again.code, 0, again.stderr);
    const human = await tsbuild(root, ['cache', 'prune', '--all', '--filter', 'until=1h']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^Total reclaimed: /m);
  });

  it('prune --all during a build does not remove what the build holds', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const ctx = await context({ Dockerfile: 'FROM busybox:local\nRUN head -c 300000 /bin/busybox > /held\nRUN sleep 2; cat /held | wc -c > /n\n' });
    dirs.push(ctx);
    // the first step is cached from an earlier build, the second runs while prune runs
    assert.equal((await tsbuild(root, ['build', '-q', '--no-cache-filter', 'stage-0', '-t', 'ux/held-old', ctx])).code, 0);
    assert.equal((await tsbuild(root, ['rmi', 'ux/held-old'])).code, 0);
    await writeFile(join(ctx, 'Dockerfile'), 'FROM busybox:local\nRUN head -c 300000 /bin/busybox > /held\nRUN sleep 2; wc -c < /held > /n\n');
    const building = tsbuild(root, ['build', '--progress=plain', '-t', 'ux/held', ctx]);
    await new Promise((r) => setTimeout(r, 1000));
    const ls = JSON.parse((await tsbuild(root, ['cache', 'ls', '--format', 'json'])).stdout) as { description: string; inUse: boolean }[];
    assert.equal(ls.find((r) => r.description.includes('head -c 300000'))?.inUse, true, 'the running build holds its cache hit');
    const prune = await tsbuild(root, ['cache', 'prune', '--all', '--format', 'json']);
    assert.equal(prune.code, 0, prune.stderr);
    const res = JSON.parse(prune.stdout) as { records: { description: string }[] };
    assert.equal(res.records.some((r) => r.description.includes('head -c 300000')), false);
    const b = await building;
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, /RUN head -c 300000 \/bin\/busybox > \/held\n#\d+ CACHED/);
    // every blob of the new image is there: its filesystem reads back
    const out = join(ctx, 'out');
    const saved = await tsbuild(root, ['save', 'ux/held', '-o', join(ctx, 'held.tar')]);
    assert.equal(saved.code, 0, saved.stderr);
    const fsOut = await tsbuild(root, ['build', '-q', '-o', `type=local,dest=${out}`, ctx]);
    assert.equal(fsOut.code, 0, fsOut.stderr);
    assert.equal((await readFile(join(out, 'n'), 'utf8')).trim(), '300000');
    assert.ok((await readdir(out)).includes('held'));
  });
});
