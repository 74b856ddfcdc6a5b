/**
 * Run by executor.test.ts as a child process that inherited fd 100 without O_CLOEXEC (like a
 * builder started by a careless parent). Runs one step and prints which fds the helper
 * holds and which fds the step's pid 1 holds, as JSON.
 * Usage: node --import tsx leaky-parent.ts <runc|unshare> <rootfs> <stateDir>
 */
import { readdirSync } from 'node:fs';
import { createExecutor } from '../index.js';

const [backend, rootfs, stateDir] = process.argv.slice(2);
if ((backend !== 'runc' && backend !== 'unshare') || rootfs === undefined || stateDir === undefined) {
  throw new Error(`usage: leaky-parent.ts <runc|unshare> <rootfs> <stateDir>, found ${process.argv.slice(2).join(' ')}`);
}
const inherited = readdirSync('/proc/self/fd');
const exec = await createExecutor({ isolation: backend, stateDir });
const chunks: Uint8Array[] = [];
const r = await exec.run({
  rootfs,
  mounts: [],
  network: 'default',
  process: { args: ['/bin/sh', '-c', 'ls /proc/1/fd; true'], env: ['PATH=/bin'], cwd: '/', user: { uid: 0, gid: 0 } },
  onStdout: (c) => chunks.push(c),
});
if (r.exitCode !== 0) throw new Error(`step failed: expected exit code 0, found ${r.exitCode}`);
const step = Buffer.concat(chunks).toString('utf8').trim().split(/\s+/);
process.stdout.write(JSON.stringify({ inherited, step }));
