/**
 * Containment at the build level (catalog T01, T02, T05, T06, T07, T11, T12, T13, T14,
 * T15, T16, T17, T18; H-SENTINEL): hostile contexts and base images aim at a sentinel
 * tree on the host; after every build it is unchanged and no byte of its canary is in
 * any layer. Lower-level halves of these cases are in the executor, apply and differ
 * tests (see SECURITY.md).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { openLayerStream, readTar, type ReadEntry } from '@tsbuild/snapshotter';
import { build, type BuildResult } from '../frontend/build.js';
import { BuildError } from '../errors.js';
import { importRootfs } from '../ops/import.js';
import { REPO_ROOT, requireBuildPrereqs, tempStoreWithBusybox, type TestStore } from '../test-helpers/store.js';
import { makeContext, rawTar, rawTarFile, runTsbuild, Sentinel } from './test-helpers/harness.js';

/** Mount points of this (the host's) mount namespace. */
function hostMountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter(Boolean);
}

interface LayerEntry extends Omit<ReadEntry, 'body'> {
  content: Buffer;
}

describe('containment: hostile contexts, destinations and base images', { concurrency: false }, () => {
  let ts: TestStore | undefined;
  let sentinel: Sentinel | undefined;
  const dirs: string[] = [];

  before(async () => {
    if (process.getuid?.() !== 0) return;
    ts = await tempStoreWithBusybox();
    sentinel = await Sentinel.create();
  });
  after(async () => {
    await ts?.cleanup();
    await sentinel?.cleanup();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function ctx(files: Record<string, string> = {}): Promise<string> {
    const d = await makeContext(files);
    dirs.push(d);
    return d;
  }

  function run(context: string, dockerfile: string, tags: string[] = []): Promise<BuildResult> {
    return build(ts!.store, { context, dockerfileText: dockerfile, tags, sourceDateEpoch: 0, isolation: 'runc' });
  }

  /** Every entry of every layer of an image, with contents. */
  async function layerEntries(result: BuildResult): Promise<LayerEntry[][]> {
    const out: LayerEntry[][] = [];
    for (const l of result.image.manifest.layers) {
      const entries: LayerEntry[] = [];
      for await (const e of readTar(openLayerStream(ts!.store.content, l))) {
        const chunks: Buffer[] = [];
        for await (const c of e.body) chunks.push(c);
        const { body: _body, ...rest } = e;
        entries.push({ ...rest, content: Buffer.concat(chunks) });
      }
      out.push(entries);
    }
    return out;
  }

  async function fileIn(result: BuildResult, path: string): Promise<LayerEntry | undefined> {
    let found: LayerEntry | undefined;
    for (const layer of await layerEntries(result)) for (const e of layer) if (e.path === path) found = e;
    return found;
  }

  async function assertNoCanary(result: BuildResult): Promise<void> {
    for (const layer of await layerEntries(result)) {
      for (const e of layer) assert.ok(!e.content.includes(sentinel!.canaryText), `canary bytes found in layer entry ${e.path}`);
    }
  }

  test('T13: COPY never follows a context symlink out of the context', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const c = await ctx({ 'sub/file': 'inner content\n' });
    await symlink(join(sentinel!.dir, 'canary'), join(c, 'leak'));
    await symlink('../../outside/file', join(c, 'rel'));
    await symlink('/', join(c, 'dir'));
    await symlink('sub/file', join(c, 'inner'));
    // a named source that is an outside symlink: copied as the link itself, or an error; never the target
    for (const df of ['COPY leak /a', `COPY dir${sentinel!.dir}/canary /b`, 'COPY rel /r', 'COPY l* /d/']) {
      try {
        const r = await run(c, `FROM busybox:local\n${df}\n`);
        await assertNoCanary(r);
      } catch (err) {
        assert.ok(err instanceof BuildError, `${df}: expected a clean build error, found ${String(err)}`);
        assert.match(err.message, /not found|outside/);
      }
    }
    // a whole-context copy keeps symlinks as symlinks
    const all = await run(c, 'FROM busybox:local\nCOPY . /app\n');
    await assertNoCanary(all);
    const leak = await fileIn(all, 'app/leak');
    assert.equal(leak?.type, 'symlink');
    assert.equal(leak?.linkname, join(sentinel!.dir, 'canary'));
    assert.equal((await fileIn(all, 'app/dir'))?.type, 'symlink');
    // an in-context symlink works
    const inner = await run(c, 'FROM busybox:local\nCOPY inner /c\n');
    assert.equal((await fileIn(inner, 'c'))?.content.toString(), 'inner content\n');
    sentinel!.assertUnchanged();
  });

  test('T14/T15: destinations resolve through rootfs symlinks as if chrooted; parents are made inside', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const s = sentinel!.dir;
    const c = await ctx({ f: 'payload\n' });
    await run(c, `FROM busybox:local\nRUN ln -s ${s}/dir /evil && ln -s / /etc2 && ln -s ../../../../../..${s}/dir /a\n`, ['hostile-links:latest']);
    const r = await run(
      c,
      `FROM hostile-links:latest\nCOPY f /evil/\nCOPY f /etc2${s}/dir/f2\nCOPY f /a/b/c/d/f\nWORKDIR /a/new/deep\nRUN test -f /evil/f && test -f ${s}/dir/f2 && test -f /a/b/c/d/f && pwd > /wd\n`,
    );
    sentinel!.assertUnchanged();
    // the files went into the image, under the link targets resolved inside the root
    const rel = s.slice(1);
    for (const p of [`${rel}/dir/f`, `${rel}/dir/f2`, `${rel}/dir/b/c/d/f`]) assert.equal((await fileIn(r, p))?.content.toString(), 'payload\n', p);
    assert.ok(await fileIn(r, `${rel}/dir/new/deep`));
  });

  test('T01: WORKDIR /proc/self/fd/N fails cleanly or reads nothing from the host', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const c = await ctx();
    for (let n = 3; n <= 10; n++) {
      try {
        const r = await run(c, `FROM busybox:local\nWORKDIR /proc/self/fd/${n}\nRUN cat ../../../${sentinel!.dir.slice(1)}/canary > /leak 2>/dev/null || true\n`);
        await assertNoCanary(r);
      } catch (err) {
        // refused before the step starts (the executor checks the cwd resolves inside the root)
        assert.equal(typeof (err as { code?: unknown }).code, 'string', `fd ${n}: expected a clean tsbuild error, found ${String(err)}`);
        assert.match((err as Error).message, /working directory/);
      }
    }
    sentinel!.assertUnchanged();
  });

  test('T02: a RUN step sees no builder file descriptors (the builder holds the SQLite index open)', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const c = await ctx();
    const r = await run(c, 'FROM busybox:local\nRUN ls /proc/self/fd > /fds; for f in /proc/self/fd/*; do readlink "$f"; done > /targets 2>&1; true\n');
    const fds = (await fileIn(r, 'fds'))!.content.toString().split('\n').filter(Boolean).map(Number);
    // 0-2, plus the one ls opened to list the directory
    assert.ok(fds.every((fd) => fd <= 3), `unexpected fds in the step: ${fds.join(' ')}`);
    const targets = (await fileIn(r, 'targets'))!.content.toString();
    assert.ok(!targets.includes(ts!.root), `a step fd points into the store:\n${targets}`);
    assert.ok(!/cache\.db|\/sys\/fs\/cgroup/.test(targets), targets);
  });

  test('T11/T12: device nodes are data, unusable in steps; setuid bits survive chown and export exactly', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const c = await ctx({ x: '#!/bin/sh\necho hi\n' });
    const r = await run(
      c,
      'FROM busybox:local\nRUN mknod /mem c 1 1 && mknod /sda b 8 0 && mkfifo /fifo\nRUN ! head -c1 /mem && ! head -c1 /sda\nCOPY --chmod=4755 x /suid\nCOPY --chown=1000:1000 --chmod=6755 x /suid2\n',
    );
    const mem = await fileIn(r, 'mem');
    assert.equal(mem?.type, 'character-device');
    assert.deepEqual([mem?.devmajor, mem?.devminor], [1, 1]);
    assert.equal((await fileIn(r, 'sda'))?.type, 'block-device');
    assert.equal((await fileIn(r, 'fifo'))?.type, 'fifo');
    const suid = await fileIn(r, 'suid');
    assert.equal(suid?.mode, 0o4755);
    const suid2 = await fileIn(r, 'suid2');
    assert.equal(suid2?.mode, 0o6755);
    assert.deepEqual([suid2?.uid, suid2?.gid], [1000, 1000]);
    // unprivileged host users cannot reach setuid files in snapshots
    assert.equal((await stat(join(ts!.root, 'snapshots', 'snapshots'))).mode & 0o777, 0o700);
  });

  test('T11: device nodes that COPY takes from a context or a stage are data too, unusable in steps', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const c = await ctx({ 'devs/keep': 'k\n' });
    execFileSync('mknod', [join(c, 'devs/mem'), 'c', '1', '1']);
    execFileSync('mknod', [join(c, 'devs/sda'), 'b', '8', '0']);
    const r = await run(
      c,
      'FROM busybox:local AS devs\nRUN mkdir /d && mknod /d/mem c 1 1 && mknod /d/sda b 8 0\n' +
        'FROM busybox:local\nCOPY --from=devs /d /fromstage/\nCOPY devs /fromctx/\n' +
        'RUN ! head -c1 /fromstage/mem && ! head -c1 /fromstage/sda && ! head -c1 /fromctx/mem && ! head -c1 /fromctx/sda && test -c /fromctx/mem && test -b /fromstage/sda\n',
    );
    for (const p of ['fromstage/mem', 'fromctx/mem']) {
      const e = await fileIn(r, p);
      assert.equal(e?.type, 'character-device', p);
      assert.deepEqual([e?.devmajor, e?.devminor], [1, 1]);
    }
    for (const p of ['fromstage/sda', 'fromctx/sda']) assert.equal((await fileIn(r, p))?.type, 'block-device', p);
  });

  test('T16: --chown and USER names are read from the rootfs as data; rootfs binaries never run on the host', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const s = sentinel!.dir;
    const c = await ctx({ f: 'x\n', 'x.tar.gz': 'not really gzip\n' });
    const trojan = `#!/bin/sh\\necho pwned > ${s}/dir/EXECUTED\\n`;
    await run(
      c,
      `FROM busybox:local\nRUN mkdir -p /usr/bin /lib/x86_64-linux-gnu && for p in /usr/bin/xz /usr/bin/unpigz /usr/bin/gzip /bin/tar /usr/bin/getent /lib/x86_64-linux-gnu/libnss_files.so.2; do printf '${trojan}' > $p; chmod 755 $p; done\n`,
      ['trojans:latest'],
    );
    const r = await run(c, 'FROM trojans:latest\nCOPY --chown=app:app f /f\nADD x.tar.gz /add/\nUSER app\nRUN id -u > /tmp/uid\n');
    sentinel!.assertUnchanged();
    const f = await fileIn(r, 'f');
    assert.deepEqual([f?.uid, f?.gid], [1000, 1000]);
  });

  test('T17: a base image with /etc/hosts and resolv.conf symlinked out; /proc/sys is read-only', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const s = sentinel!.dir;
    const c = await ctx();
    // RUN cannot plant these (the runtime bind-mounts /etc/hosts...), a COPY of context symlinks can
    await mkdir(join(c, 'etc'));
    for (const f of ['hosts', 'resolv.conf', 'hostname']) await symlink(`${s}/victim`, join(c, 'etc', f));
    await run(c, 'FROM busybox:local\nCOPY etc/ /etc/\n', ['hostile-etc:latest']);
    await run(c, 'FROM hostile-etc:latest\nRUN cat /etc/hosts > /dev/null 2>&1; ! sh -c "echo x > /proc/sys/kernel/core_pattern" 2>/dev/null\nRUN ! sh -c "head -c1 /proc/kcore" 2>/dev/null\n');
    sentinel!.assertUnchanged();
  });

  test('T17: base layers whose /dev, /dev/* or /proc are symlinks to host paths: RUN works or fails cleanly, on runc and unshare; nothing outside the root changes', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const s = sentinel!.dir;
    const corePattern = await readFile('/proc/sys/kernel/core_pattern', 'utf8');
    const mountsBefore = hostMountPoints();
    // each variant is its own base image (a crafted layer: RUN cannot plant these, the runtime mounts over them)
    const variants: Record<string, Record<string, string>> = {
      entries: {
        'dev/null': '/proc/sys/kernel/core_pattern',
        'dev/console': '/proc/sysrq-trigger',
        'dev/zero': `${s}/victim`,
        'dev/full': `${s}/canary`,
        'dev/random': `../../../../../../..${s}/victim`,
        'dev/tty': `${s}/victim`,
        'dev/ptmx': `${s}/victim`,
        'dev/shm': `${s}/dir`,
        'dev/mqueue': `${s}/dir`,
        'dev/pts': '/proc',
        'dev/fd': `${s}/dir`,
      },
      'dev-absolute': { dev: `${s}/dir` },
      'dev-relative': { dev: `../../../../../../..${s}/dir` },
      'proc-link': { proc: `${s}/dir` },
    };
    const step = [
      'for f in null zero full random tty ptmx console; do echo pwned > /dev/$f; done',
      'echo pwned > /dev/shm/pwned; echo pwned > /dev/mqueue/pwned; ls /dev/pts /dev/fd/ > /dev/null',
      'echo pwned > /proc/sys/kernel/core_pattern; echo pwned > /proc/sysrq-trigger',
      'true',
    ].join('; ');
    const outcomes: string[] = [];
    for (const [name, links] of Object.entries(variants)) {
      const rootfs = await ctx();
      spawnSync('bash', [join(REPO_ROOT, 'scripts', 'make-busybox-rootfs.sh'), rootfs], { stdio: 'ignore' });
      for (const [path, target] of Object.entries(links)) {
        await rm(join(rootfs, path), { recursive: true, force: true });
        await mkdir(join(rootfs, path, '..'), { recursive: true });
        await symlink(target, join(rootfs, path));
      }
      await importRootfs(ts!.store, rootfs, { tags: [`hostile-dev-${name}:latest`], config: { Env: ['PATH=/bin'] }, sourceDateEpoch: 0 });
      for (const isolation of ['runc', 'unshare'] as const) {
        try {
          await build(ts!.store, { context: await ctx(), dockerfileText: `FROM hostile-dev-${name}:latest\nRUN ${step} 2>/dev/null\n`, sourceDateEpoch: 0, isolation, noCache: true });
          outcomes.push(`${name}/${isolation}: built`);
        } catch (err) {
          // a clean refusal: a tsbuild error with a code, not a crash
          assert.equal(typeof (err as { code?: unknown }).code, 'string', `${name}/${isolation}: expected a clean tsbuild error, found ${String(err)}`);
          outcomes.push(`${name}/${isolation}: ${(err as Error).message.split('\n')[0]!.slice(0, 120)}`);
        }
        try {
          sentinel!.assertUnchanged();
        } catch (err) {
          throw new Error(`${name}/${isolation} (${outcomes.at(-1)}): ${(err as Error).message}`, { cause: err });
        }
        assert.equal(await readFile('/proc/sys/kernel/core_pattern', 'utf8'), corePattern, `${name}/${isolation}: core_pattern changed`);
        // (only where the links point: other processes on this machine mount elsewhere meanwhile)
        const onTargets = (m: string): boolean => m === s || m.startsWith(`${s}/`) || m === '/proc' || m.startsWith('/proc/') || m === '/dev' || m.startsWith('/dev/');
        assert.deepEqual(hostMountPoints().filter((m) => !mountsBefore.includes(m) && onTargets(m)), [], `${name}/${isolation}: a mount appeared on the host`);
      }
    }
    t.diagnostic(outcomes.join('\n'));
    // the plain entries variant must still run its step (the runtimes mount a fresh /dev over the links)
    assert.ok(outcomes.includes('entries/runc: built') && outcomes.includes('entries/unshare: built'), outcomes.join('\n'));
  });

  test('T07: ADD of a local tar-slip archive never writes outside the root', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const c = await ctx();
    // a tar whose entry climbs out: `../../../../<sentinel>/dir/pwned`
    const name = `../../../../../..${sentinel!.dir}/dir/pwned`;
    const header = Buffer.alloc(512);
    header.write(name.slice(0, 99), 0);
    header.write('0000644\0', 100);
    header.write('0000000\0', 108);
    header.write('0000000\0', 116);
    header.write('00000000005\0', 124);
    header.write('00000000000\0', 136);
    header.write('        ', 148);
    header.write('0', 156);
    header.write('ustar\x0000', 257);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    const body = Buffer.alloc(512);
    body.write('pwned');
    await mkdir(c, { recursive: true });
    await writeFile(join(c, 'evil.tar'), Buffer.concat([header, body, Buffer.alloc(1024)]));
    let outcome: unknown;
    try {
      outcome = await run(c, 'FROM busybox:local\nADD evil.tar /dst/\n');
    } catch (err) {
      // refused: a clean error that names the entry
      assert.equal(typeof (err as { code?: unknown }).code, 'string', `expected a clean tsbuild error, found ${String(err)}`);
      assert.match((err as Error).message, /pwned|\.\./);
    }
    if (outcome !== undefined) {
      // copied as a file, or extracted with the name clamped: either way the entry is in the image
      const entries = (await layerEntries(outcome as BuildResult)).flat();
      const kept = entries.some((e) => e.path === 'dst/evil.tar' || e.content.toString() === 'pwned');
      assert.ok(kept, `expected the archive or its clamped entry in the image, found ${entries.map((e) => e.path).join(' ')}`);
    }
    sentinel!.assertUnchanged();
  });

  test('T07: tar-slip entries in gzip, bzip2, xz and zstd archives are clamped inside the destination', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const strict = process.env.CI === 'true' || process.getuid?.() === 0;
    const s = sentinel!.dir;
    const c = await ctx();
    const tar = rawTar([
      rawTarFile(`../../../../../..${s}/dir/pwned`, 'pwned'),
      rawTarFile(`a/../../../../../../..${s}/dir/pwned2`, 'pwned2'),
      rawTarFile('./../x', 'x'),
      rawTarFile('..', '', '5'),
      rawTarFile('ok/file', 'ok'),
    ]);
    await writeFile(join(c, 'evil.tar'), tar);
    const tools: [string, string, string][] = [
      ['gz', 'gzip', 'gzip'],
      ['bz2', 'bzip2', 'bzip2'],
      ['xz', 'xz', 'xz-utils'],
      ['zst', 'zstd', 'zstd'],
    ];
    const lines = ['FROM busybox:local'];
    for (const [ext, tool, pkg] of tools) {
      const r = spawnSync(tool, ['-c', join(c, 'evil.tar')], { maxBuffer: 1 << 24 });
      if (r.error || r.status !== 0) {
        const why = `${tool} is needed to make the .tar.${ext} variant: install the Debian package ${pkg}`;
        if (strict) assert.fail(why);
        t.diagnostic(why);
        continue;
      }
      await writeFile(join(c, `evil.tar.${ext}`), r.stdout);
      lines.push(`ADD evil.tar.${ext} /dst-${ext}/`);
    }
    const r = await run(c, `${lines.join('\n')}\n`);
    sentinel!.assertUnchanged();
    const entries = (await layerEntries(r)).flat();
    const files = new Map(entries.filter((e) => e.type === 'file').map((e) => [e.path, e.content.toString()]));
    for (const line of lines.slice(1)) {
      const dst = /\/(dst-\w+)\//.exec(line)![1]!;
      // BuildKit's behaviour: names are cleaned relative to the destination (`..` clamped at it)
      assert.equal(files.get(`${dst}${s}/dir/pwned`), 'pwned', `${line}: the clamped first entry`);
      assert.equal(files.get(`${dst}${s}/dir/pwned2`), 'pwned2', `${line}: the clamped second entry`);
      assert.equal(files.get(`${dst}/x`), 'x', line);
      assert.equal(files.get(`${dst}/ok/file`), 'ok', line);
      for (const p of files.keys()) if (p.startsWith(`${dst}`)) assert.ok(!p.split('/').includes('..'), p);
    }
    await assertNoCanary(r);
  });

  test('T05/T06: privileged RUN modes need an entitlement; # syntax= never fetches a frontend', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const c = await ctx();
    await assert.rejects(run(c, 'FROM busybox:local\nRUN --security=insecure cat /proc/self/status\n'), /security\.insecure entitlement/);
    // a custom frontend is refused before anything runs; the well-known one is served by the built-in frontend
    await assert.rejects(run(c, '# syntax=attacker.example/evil:latest\nFROM busybox:local\nRUN true\n'), /unsupported syntax image "attacker\.example\/evil:latest"/);
    const ok = await run(c, '# syntax=docker/dockerfile:1\nFROM busybox:local\nRUN --network=none true\n');
    assert.ok(ok.digest);
    // BUILDKIT_SYNTAX as a build arg is only an (unused) argument: nothing is fetched
    const viaArg = await build(ts!.store, { context: c, dockerfileText: 'FROM busybox:local\nRUN true\n', buildArgs: { BUILDKIT_SYNTAX: 'attacker.example/evil' }, sourceDateEpoch: 0 });
    assert.equal(viaArg.digest, ok.digest);
  });

  test('T05: every RUN, on runc and on unshare, root or not, gets the same capability policy: no inheritable or ambient set, no_new_privs', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const c = await ctx();
    const grab = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status";
    const status: Record<string, Record<string, string>> = {};
    for (const isolation of ['runc', 'unshare'] as const) {
      const r = await build(ts!.store, { context: c, dockerfileText: `FROM busybox:local\nRUN ${grab} > /status-root\nUSER 1000:1000\nRUN ${grab} > /tmp/status-user\n`, sourceDateEpoch: 0, isolation, noCache: true });
      for (const [who, path] of [['root', 'status-root'], ['user', 'tmp/status-user']] as const) {
        const text = (await fileIn(r, path))?.content.toString() ?? '';
        status[`${isolation}/${who}`] = Object.fromEntries(text.split('\n').filter(Boolean).map((l) => l.split(/:\s+/) as [string, string]));
      }
    }
    for (const [k, v] of Object.entries(status)) {
      assert.equal(v.CapInh, '0000000000000000', `${k}: inheritable capabilities`);
      assert.equal(v.CapAmb, '0000000000000000', `${k}: ambient capabilities`);
      assert.equal(v.NoNewPrivs, '1', `${k}: no_new_privs`);
      if (k.endsWith('/user')) assert.deepEqual([v.CapPrm, v.CapEff], ['0000000000000000', '0000000000000000'], `${k}: a non-root step has no capabilities`);
      else assert.equal(v.CapEff, v.CapBnd, `${k}: root gets the bounding set`);
    }
    // Docker's default set, identical on both backends
    assert.equal(status['runc/root']!.CapBnd, '00000000a80425fb');
    assert.deepEqual(status['unshare/root'], status['runc/root']);
    assert.deepEqual(status['unshare/user'], status['runc/user']);
  });

  test('T18: instruction fields that change the result change the cache key', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const c = await ctx({ f: 'x\n' });
    const a = await run(c, 'FROM busybox:local\nCOPY --chmod=644 f /f\nHEALTHCHECK CMD a\n');
    const b = await run(c, 'FROM busybox:local\nCOPY --chmod=755 f /f\nHEALTHCHECK CMD a\n');
    const h = await run(c, 'FROM busybox:local\nCOPY --chmod=755 f /f\nHEALTHCHECK CMD b\n');
    assert.equal((await fileIn(a, 'f'))?.mode, 0o644);
    assert.equal((await fileIn(b, 'f'))?.mode, 0o755);
    assert.equal(b.steps.find((s) => s.description.includes('COPY'))?.cached, false);
    assert.notEqual(b.digest, h.digest);
    assert.deepEqual(h.image.config.config.Healthcheck?.Test, ['CMD-SHELL', 'b']);
  });

  test('T01/T17: a runc with known escapes is refused at start, naming its version', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const bin = await ctx();
    await writeFile(join(bin, 'runc'), '#!/bin/sh\necho "runc version 1.1.11"\necho "commit: v1.1.11-0-g4bccb38c"\necho "spec: 1.0.2-dev"\n', { mode: 0o755 });
    const c = await ctx({ Dockerfile: 'FROM busybox:local\nRUN echo runtime check\n' });
    await ts!.store.close();
    try {
      const r = await runTsbuild(ts!.root, ['build', '--progress', 'plain', '--no-cache', '--isolation', 'runc', c], { env: { PATH: `${bin}:${process.env.PATH ?? ''}` } });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stdout + r.stderr, /refusing runc 1\.1\.11/);
      assert.match(r.stdout + r.stderr, /CVE-2024-21626/);
    } finally {
      const { BuildStore } = await import('../store.js');
      ts!.store = await BuildStore.open(ts!.root);
    }
  });
});
