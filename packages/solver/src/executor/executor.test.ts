/**
 * Privileged tests: real sandboxes on a busybox rootfs, for both backends. They need root,
 * runc (Debian package runc) and a static busybox (busybox-static); under CI or as root a
 * missing prerequisite fails naming the package.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { AbortError, createExecutor, ExecutorError, type Executor, type ExecMount, type NetworkMode, type RunRequest } from './index.js';
import { hasBusybox, isRoot, makeBusyboxRootfs, requirePrereq } from './test-helpers/busybox-rootfs.js';

const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface Captured {
  exitCode: number;
  stdout: string;
  stderr: string;
  createdStubs: string[];
}

async function sh(
  exec: Executor,
  rootfs: string,
  script: string,
  opts: { network?: NetworkMode; mounts?: ExecMount[]; uid?: number; gid?: number; gids?: number[]; cwd?: string; env?: string[]; hostname?: string; stdin?: string; signal?: AbortSignal } = {},
): Promise<Captured> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const req: RunRequest = {
    rootfs,
    mounts: opts.mounts ?? [],
    network: opts.network ?? 'default',
    process: {
      args: ['/bin/sh', '-c', script],
      env: opts.env ?? [PATH_ENV],
      cwd: opts.cwd ?? '/',
      user: { uid: opts.uid ?? 0, gid: opts.gid ?? 0, additionalGids: opts.gids ?? [] },
      ...(opts.hostname !== undefined ? { hostname: opts.hostname } : {}),
    },
    onStdout: (c) => out.push(Buffer.from(c)),
    onStderr: (c) => err.push(Buffer.from(c)),
    ...(opts.stdin !== undefined ? { stdin: new TextEncoder().encode(opts.stdin) } : {}),
    ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
  };
  const r = await exec.run(req);
  return { exitCode: r.exitCode, createdStubs: r.createdStubs, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

function runcList(stateDir: string): string {
  return execFileSync('runc', ['--root', join(stateDir, 'runc'), 'list', '-q'], { encoding: 'utf8' });
}

for (const backend of ['runc', 'unshare'] as const) {
  describe(`executor (${backend})`, { concurrency: false }, () => {
    let exec: Executor;
    let rootfs: string;
    let stateDir: string;
    let ready = false;

    before(async () => {
      if (!isRoot() || !hasBusybox() || (backend === 'runc' && !existsSync('/usr/sbin/runc'))) return;
      rootfs = await makeBusyboxRootfs();
      stateDir = await mkdtemp(join(tmpdir(), 'tsbuild-exec-state-'));
      exec = await createExecutor({ isolation: backend, stateDir });
      ready = true;
    });
    after(async () => {
      if (!ready) return;
      await rm(dirname(rootfs), { recursive: true, force: true });
      await rm(stateDir, { recursive: true, force: true });
    });

    function prereqs(t: { skip(msg: string): void }): boolean {
      return (
        requirePrereq(t, isRoot(), 'root (the executor needs namespaces and mounts)', 'sudo') &&
        requirePrereq(t, hasBusybox(), '/bin/busybox', 'busybox-static') &&
        (backend !== 'runc' || requirePrereq(t, existsSync('/usr/sbin/runc'), 'runc', 'runc')) &&
        requirePrereq(t, ready, 'the executor', backend === 'runc' ? 'runc' : 'util-linux')
      );
    }

    test('stdout and stderr are separate; exit code is a result', async (t) => {
      if (!prereqs(t)) return;
      assert.equal(exec.name, backend);
      const r = await sh(exec, rootfs, 'echo to-out; echo to-err >&2; echo dev-out > /dev/stdout; echo dev-err > /dev/stderr; exit 3');
      assert.equal(r.exitCode, 3);
      assert.equal(r.stdout, 'to-out\ndev-out\n');
      assert.equal(r.stderr, 'to-err\ndev-err\n');
    });

    test('env (exactly), cwd (created), stdin', async (t) => {
      if (!prereqs(t)) return;
      const r = await sh(exec, rootfs, 'env | sort; pwd; cat', { env: [PATH_ENV, 'FOO=bar baz', 'EMPTY='], cwd: '/work/dir', stdin: 'from-stdin' });
      assert.equal(r.exitCode, 0, r.stderr);
      const lines = r.stdout.split('\n');
      assert.ok(lines.includes('FOO=bar baz'));
      assert.ok(lines.includes('EMPTY='));
      assert.ok(lines.includes('/work/dir'));
      assert.ok(r.stdout.endsWith('from-stdin'));
      // Nothing from the builder's environment leaks (only what sh itself sets).
      const names = lines.filter((l) => l.includes('=')).map((l) => l.split('=')[0]);
      for (const n of names) assert.ok(['PATH', 'FOO', 'EMPTY', 'PWD', 'SHLVL', 'HOME'].includes(n as string), `unexpected env ${n}`);
      // HOME is added like runc/Docker do: from the user's passwd entry, else /.
      assert.ok(lines.includes('HOME=/root'));
      assert.ok((await stat(join(rootfs, 'work/dir'))).isDirectory());
    });

    test('uid, gid and supplementary groups; capabilities like Docker', async (t) => {
      if (!prereqs(t)) return;
      const app = await sh(exec, rootfs, 'id -u; id -g; id -G; grep -E "^Cap(Eff|Bnd)" /proc/self/status', { uid: 1000, gid: 1000, gids: [10, 29] });
      assert.equal(app.exitCode, 0, app.stderr);
      const [u, g, groups] = app.stdout.split('\n');
      assert.equal(u, '1000');
      assert.equal(g, '1000');
      assert.deepEqual(groups?.split(' ').sort(), ['10', '1000', '29']);
      assert.match(app.stdout, /CapEff:\s+0000000000000000/);
      assert.match(app.stdout, /CapBnd:\s+00000000a80425fb/);
      const root = await sh(exec, rootfs, 'grep -E "^(CapEff|NoNewPrivs)" /proc/self/status');
      assert.match(root.stdout, /CapEff:\s+00000000a80425fb/);
      assert.match(root.stdout, /NoNewPrivs:\s+1/);
    });

    if (backend === 'runc') {
      test("seccomp filter mode: new namespaces (which Docker's default profile refuses) fail for root and a user; forks still work", async (t) => {
        if (!prereqs(t)) return;
        const script = 'grep "^Seccomp:" /proc/self/status; unshare -U true 2>/dev/null && echo userns; unshare -n true 2>/dev/null && echo netns; (true &); wait; echo forked';
        for (const who of [{ uid: 0, gid: 0 }, { uid: 1000, gid: 1000 }]) {
          const r = await sh(exec, rootfs, script, who);
          assert.equal(r.exitCode, 0, r.stderr);
          const lines = r.stdout.trim().split('\n');
          assert.match(lines[0] ?? '', /^Seccomp:\s+2$/, `uid ${who.uid}: ${r.stdout}`);
          assert.ok(!lines.includes('userns') && !lines.includes('netns'), `uid ${who.uid}: no namespace may be created: ${r.stdout}`);
          assert.equal(lines.at(-1), 'forked');
        }
      });
    }

    test('device nodes the step creates cannot be used; the standard ones can', async (t) => {
      if (!prereqs(t)) return;
      const r = await sh(exec, rootfs, 'mknod /tmp/mem c 1 1 && echo made; head -c 1 /tmp/mem >/dev/null 2>&1 && echo usable; echo x > /dev/null && head -c 4 /dev/zero | wc -c; rm -f /tmp/mem');
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, 'made\n4\n');
    });

    test('pid namespace: the step is pid 1; hostname and /etc files', async (t) => {
      if (!prereqs(t)) return;
      const r = await sh(exec, rootfs, 'echo $$; ps -o pid,comm | wc -l; hostname; cat /etc/hostname; cat /etc/hosts; touch /etc/hosts 2>/dev/null && echo hosts-writable; grep -c nameserver /etc/resolv.conf', { hostname: 'stephost' });
      assert.equal(r.exitCode, 0, r.stderr);
      const lines = r.stdout.split('\n');
      assert.equal(lines[0], '1');
      assert.ok(Number(lines[1]) <= 4, `expected only the step's processes, found ${lines[1]} ps lines`);
      assert.equal(lines[2], 'stephost');
      assert.equal(lines[3], 'stephost');
      assert.match(r.stdout, /127\.0\.0\.1\tlocalhost stephost/);
      assert.doesNotMatch(r.stdout, /hosts-writable/);
      assert.ok(Number(lines.at(-2)) >= 1);
    });

    test('network none has only lo, up; default/host share the host interfaces', async (t) => {
      if (!prereqs(t)) return;
      const none = await sh(exec, rootfs, 'ls /sys/class/net; cat /sys/class/net/lo/flags; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping-ok', { network: 'none' });
      assert.equal(none.exitCode, 0, none.stderr);
      const [ifs, flags] = [none.stdout.split('\n')[0], none.stdout.split('\n')[1]];
      assert.equal(ifs, 'lo');
      assert.equal(Number(flags) & 1, 1, 'lo must be IFF_UP');
      assert.match(none.stdout, /ping-ok/);
      const hostIfs = (await readdir('/sys/class/net')).sort();
      for (const mode of ['host', 'default'] as const) {
        const r = await sh(exec, rootfs, 'ls -1 /sys/class/net', { network: mode });
        assert.deepEqual(r.stdout.trim().split('\n').sort(), hostIfs);
      }
    });

    test('no builder fds beyond 0, 1, 2 reach the step', async (t) => {
      if (!prereqs(t)) return;
      // ls runs while pid 1 (the shell) waits: pid 1's fds are exactly what the step got.
      const r = await sh(exec, rootfs, 'ls -l /proc/1/fd', { stdin: 'x' });
      assert.equal(r.exitCode, 0, r.stderr);
      const fds = r.stdout.trim().split('\n').filter((l) => l.includes(' -> ')).map((l) => /(\d+) -> (.*)$/.exec(l)?.slice(1) ?? []);
      assert.deepEqual(fds.map((f) => f[0]), ['0', '1', '2'], r.stdout);
      for (const [, target] of fds) assert.match(target as string, /^pipe:\[\d+\]$/, r.stdout);
    });

    test('bind ro is read-only, bind rw writable, tmpfs works; stubs reported', async (t) => {
      if (!prereqs(t)) return;
      const src = await mkdtemp(join(tmpdir(), 'tsbuild-exec-src-'));
      await writeFile(join(src, 'f'), 'content');
      const rwSrc = await mkdtemp(join(tmpdir(), 'tsbuild-exec-rw-'));
      try {
        const r = await sh(
          exec,
          rootfs,
          'cat /mnt/ro/f; touch /mnt/ro/x 2>/dev/null && echo ro-writable; echo w > /mnt/rw/new; echo t > /scratch/t && cat /scratch/t; grep " /scratch " /proc/mounts | cut -d" " -f3',
          {
            mounts: [
              { type: 'bind', source: src, target: '/mnt/ro', readonly: true },
              { type: 'bind', source: rwSrc, target: '/mnt/rw', readonly: false },
              { type: 'tmpfs', target: '/scratch', size: 1 << 20 },
            ],
          },
        );
        assert.equal(r.exitCode, 0, r.stderr);
        assert.equal(r.stdout, 'contentt\ntmpfs\n');
        assert.equal(await readFile(join(rwSrc, 'new'), 'utf8'), 'w\n');
        assert.ok(r.createdStubs.includes('mnt'));
        assert.ok(r.createdStubs.includes('mnt/ro'));
        assert.ok(r.createdStubs.includes('mnt/rw'));
        assert.ok(r.createdStubs.includes('scratch'));
        // Empty stubs are removed after the run; the tmpfs content never reached the rootfs.
        for (const stub of ['mnt/ro', 'mnt/rw', 'mnt', 'scratch']) assert.equal(existsSync(join(rootfs, stub)), false, stub);
      } finally {
        await rm(src, { recursive: true, force: true });
        await rm(rwSrc, { recursive: true, force: true });
      }
    });

    test('symlinks used as mount target or cwd stay inside the rootfs', async (t) => {
      if (!prereqs(t)) return;
      const outside = `/tmp/tsbuild-host-path-outside-${backend}`;
      await rm(outside, { recursive: true, force: true });
      const link = join(rootfs, `evil-${backend}`);
      await symlink(outside, link);
      const src = await mkdtemp(join(tmpdir(), 'tsbuild-exec-src-'));
      try {
        const r = await sh(exec, rootfs, 'pwd; echo hi > here', {
          mounts: [{ type: 'bind', source: src, target: `/evil-${backend}/m`, readonly: false }],
          cwd: `/evil-${backend}/wd`,
        });
        assert.equal(r.exitCode, 0, r.stderr);
        assert.equal(r.stdout.split('\n')[0], `${outside}/wd`);
        assert.equal(existsSync(outside), false, 'nothing may be created on the host outside the rootfs');
        assert.equal(await readFile(join(rootfs, outside, 'wd', 'here'), 'utf8'), 'hi\n');
        assert.ok(r.createdStubs.includes(`${outside.slice(1)}/m`));
        // WORKDIR /proc/self/fd/N (CVE-2024-21626's shape) is refused before anything runs.
        for (let n = 3; n <= 32; n++) {
          await assert.rejects(sh(exec, rootfs, 'cat ../../../etc/passwd', { cwd: `/proc/self/fd/${n}` }), (e: unknown) => e instanceof ExecutorError && e.code === 'INVALID_ARGUMENT');
        }
        assert.equal(existsSync(join(rootfs, 'proc', 'self')), false, 'no directories created under /proc');
      } finally {
        await rm(src, { recursive: true, force: true });
      }
    });

    test('stub cleanup never follows a symlink the step planted (CVE-2024-23652)', async (t) => {
      if (!prereqs(t)) return;
      const sentinel = await mkdtemp(join(tmpdir(), 'tsbuild-sentinel-'));
      await mkdir(join(sentinel, 'y'));
      await writeFile(join(sentinel, 'y', 'victim'), '');
      try {
        // Without CAP_SYS_ADMIN the step cannot unmount, but it can move the stub's parent away.
        const r = await sh(exec, rootfs, `mv /x /x.old && ln -s ${sentinel} /x`, {
          mounts: [{ type: 'tmpfs', target: '/x/y/victim' }],
        });
        assert.equal(r.exitCode, 0, r.stderr);
        assert.deepEqual(r.createdStubs.filter((x) => x.startsWith('x')), ['x', 'x/y', 'x/y/victim']);
        assert.equal(existsSync(join(sentinel, 'y', 'victim')), true, 'the host victim must survive');
        assert.equal((await lstat(join(rootfs, 'x'))).isSymbolicLink(), true, 'the planted symlink stays (it is the step output)');
        await rm(join(rootfs, 'x'));
        await rm(join(rootfs, 'x.old'), { recursive: true });
      } finally {
        await rm(sentinel, { recursive: true, force: true });
      }
    });

    // with the native addon (fds marked close-on-exec, runc spawned directly) and without (TSBUILD_NATIVE=0: the bash launcher closes them)
    for (const nativeAddon of ['1', '0']) {
      test(`fds the builder inherited without CLOEXEC do not reach the step (TSBUILD_NATIVE=${nativeAddon})`, async (t) => {
        if (!prereqs(t)) return;
        // A child node process inherits fd 100 (not close-on-exec) and runs a step. A high
        // fd: Node itself marks the inherited fds up to the first gap above 15 at start-up.
        // (runc init marks fds above 2 close-on-exec too, since the CVE-2024-21626 fix: this is
        // the end-to-end check; native.test.ts checks the marking itself.)
        const child = join(dirname(new URL(import.meta.url).pathname), 'test-helpers', 'leaky-parent.ts');
        const out = execFileSync('bash', ['-c', 'exec 100</dev/null; exec "$0" --import tsx "$@"', process.execPath, child, backend, rootfs, stateDir], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'inherit'],
          env: { ...process.env, TSBUILD_NATIVE: nativeAddon },
        });
        const fds = JSON.parse(out) as { inherited: string[]; step: string[] };
        assert.ok(fds.inherited.includes('100'), `the helper must really hold fd 100: ${fds.inherited.join(',')}`);
        assert.deepEqual(fds.step, ['0', '1', '2']);
      });
    }

    test('abort kills a sleeping step within a second and leaves no container', async (t) => {
      if (!prereqs(t)) return;
      const ac = new AbortController();
      const started = Date.now();
      const p = sh(exec, rootfs, 'echo started; sleep 100', { signal: ac.signal, uid: 1000, gid: 1000 });
      await new Promise((r) => setTimeout(r, 300));
      const abortAt = Date.now();
      ac.abort();
      await assert.rejects(p, (e: unknown) => e instanceof AbortError && e.name === 'AbortError');
      assert.ok(Date.now() - abortAt < 1000, `abort took ${Date.now() - abortAt} ms`);
      assert.ok(Date.now() - started < 5000);
      const sleepers = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.trim() === 'sleep 100');
      assert.deepEqual(sleepers, []);
      if (backend === 'runc') assert.equal(runcList(stateDir).trim(), '');
      // An already-aborted signal never starts anything.
      await assert.rejects(sh(exec, rootfs, 'true', { signal: AbortSignal.abort() }), AbortError);
    });

    test('a step that cannot start is an error, not a silent success', async (t) => {
      if (!prereqs(t)) return;
      const r = exec.run({ rootfs, mounts: [], network: 'default', process: { args: ['/nonexistent'], env: [PATH_ENV], cwd: '/', user: { uid: 0, gid: 0 } } });
      if (backend === 'runc') {
        await assert.rejects(r, (e: unknown) => e instanceof ExecutorError && e.code === 'FAILED_PRECONDITION');
        assert.equal(runcList(stateDir).trim(), '');
      } else {
        assert.equal((await r).exitCode, 127);
      }
      await assert.rejects(exec.run({ rootfs, mounts: [{ type: 'bind', source: '/nonexistent-src', target: '/x', readonly: true }], network: 'default', process: { args: ['true'], env: [], cwd: '/', user: { uid: 0, gid: 0 } } }), (e: unknown) => e instanceof ExecutorError && e.code === 'NOT_FOUND');
    });

    test('concurrent steps do not collide', async (t) => {
      if (!prereqs(t)) return;
      // One rootfs per step, as the solver mounts one snapshot per step.
      const roots = await Promise.all([1, 2, 3, 4].map(() => makeBusyboxRootfs()));
      try {
        const rs = await Promise.all(roots.map((root, i) => sh(exec, root, `echo $$ ${i}; hostname`, { network: i % 2 === 0 ? 'none' : 'default', hostname: `h${i}` })));
        assert.deepEqual(rs.map((r) => r.stdout), ['1 0\nh0\n', '1 1\nh1\n', '1 2\nh2\n', '1 3\nh3\n']);
      } finally {
        await Promise.all(roots.map((root) => rm(dirname(root), { recursive: true, force: true })));
      }
    });
  });
}

test('auto isolation picks runc when it is installed and safe', async (t) => {
  if (!requirePrereq(t, isRoot(), 'root (the executor needs namespaces and mounts)', 'sudo')) return;
  if (!requirePrereq(t, existsSync('/usr/sbin/runc'), 'runc', 'runc')) return;
  const stateDir = await mkdtemp(join(tmpdir(), 'tsbuild-exec-state-'));
  try {
    assert.equal((await createExecutor({ stateDir })).name, 'runc');
    await assert.rejects(createExecutor({ stateDir: 'relative' }), (e: unknown) => e instanceof ExecutorError && e.code === 'INVALID_ARGUMENT');
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
});
