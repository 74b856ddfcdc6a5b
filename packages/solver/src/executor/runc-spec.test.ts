import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildRuncSpec } from './runc-spec.js';
import type { PreparedStep } from './prepare.js';

const prepared: PreparedStep = {
  stubs: [],
  mounts: [
    { type: 'bind', source: '/host/ctx', destination: '/src', hostTarget: '/r/src', readonly: true, size: undefined },
    { type: 'tmpfs', source: undefined, destination: '/tmp/t', hostTarget: '/r/tmp/t', readonly: false, size: 4096 },
  ],
  cwd: '/work',
  env: ['PATH=/bin', 'HOME=/root'],
  hostname: 'h',
  files: { hosts: '/b/hosts', resolvConf: '/b/resolv.conf', hostname: '/b/hostname' },
  fileTargets: { hosts: '/etc/hosts', resolvConf: '/etc/resolv.conf', hostname: '/etc/hostname' },
};

function spec(uid: number, network: 'default' | 'none' | 'host') {
  return buildRuncSpec({ rootfs: '/r', prepared, network, cgroupsPath: '/tsbuild/x', nofile: 1048576, process: { args: ['sh'], env: ['PATH=/bin'], cwd: '/work', user: { uid, gid: uid, additionalGids: [10] } } });
}

test('namespaces: a network namespace only for network none', () => {
  assert.deepEqual(spec(0, 'none').linux.namespaces.map((n) => n.type).sort(), ['ipc', 'mount', 'network', 'pid', 'uts']);
  assert.deepEqual(spec(0, 'default').linux.namespaces.map((n) => n.type).sort(), ['ipc', 'mount', 'pid', 'uts']);
  assert.deepEqual(spec(0, 'host').linux.namespaces.map((n) => n.type).sort(), ['ipc', 'mount', 'pid', 'uts']);
});

test('capabilities: Docker defaults, effective only for root; no_new_privs; rlimit', () => {
  const root = spec(0, 'default');
  assert.equal(root.process.capabilities.bounding.length, 14);
  assert.deepEqual(root.process.capabilities.effective, root.process.capabilities.bounding);
  assert.deepEqual(root.process.capabilities.inheritable, []);
  const app = spec(1000, 'default');
  assert.deepEqual(app.process.capabilities.effective, []);
  assert.deepEqual(app.process.capabilities.permitted, []);
  assert.equal(app.process.capabilities.bounding.length, 14);
  assert.deepEqual(app.process.user, { uid: 1000, gid: 1000, additionalGids: [10] });
  assert.equal(app.process.noNewPrivileges, true);
  assert.equal(app.process.terminal, false);
  assert.deepEqual(app.process.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1048576, soft: 1048576 }]);
  assert.deepEqual(app.process.env, ['PATH=/bin', 'HOME=/root']);
});

test('mounts: system mounts first, /etc files and ro binds read-only, tmpfs size', () => {
  const s = spec(0, 'default');
  const dests = s.mounts.map((m) => m.destination);
  assert.deepEqual(dests, ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/etc/hosts', '/etc/resolv.conf', '/etc/hostname', '/src', '/tmp/t']);
  for (const m of s.mounts.filter((x) => x.destination.startsWith('/etc/') || x.destination === '/sys' || x.destination === '/src')) {
    assert.ok(m.options?.includes('ro'), m.destination);
  }
  assert.ok(s.mounts.find((m) => m.destination === '/tmp/t')?.options?.includes('size=4096'));
  assert.equal(s.root.readonly, false);
  assert.equal(s.root.path, '/r');
  assert.ok(s.linux.maskedPaths.includes('/proc/kcore'));
  assert.ok(s.linux.readonlyPaths.includes('/proc/sys'));
  assert.equal(s.linux.cgroupsPath, '/tsbuild/x');
});
