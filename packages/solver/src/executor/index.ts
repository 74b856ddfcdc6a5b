/**
 * The executor: runs one RUN step in a sandbox on an already-mounted rootfs.
 *
 * ```ts
 * const exec = await createExecutor({ stateDir: join(root, 'executor') });
 * const { exitCode, createdStubs } = await exec.run({
 *   rootfs, mounts: [], network: 'default',
 *   process: { args: ['/bin/sh', '-c', 'echo hi'], env: ['PATH=/bin'], cwd: '/', user: await resolveUser(rootfs, 'app') },
 *   onStdout: (c) => log(1, c), onStderr: (c) => log(2, c), signal,
 * });
 * ```
 */
import { mkdir } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { ExecutorError } from './errors.js';
import { RuncExecutor } from './runc.js';
import { cachedRuncVersionOutput, checkRuncVersion, findExecutable, probeCgroupParent, readDebianRuncChangelog } from './runtime-check.js';
import type { Executor, ExecutorOptions } from './types.js';
import { UnshareExecutor, type UnshareTools } from './unshare.js';

export type { BindMount, ExecMount, Executor, ExecutorOptions, NetworkMode, ProcessSpec, RunRequest, RunResult, TmpfsMount } from './types.js';
export { AbortError, ExecutorError, type ExecutorErrorCode } from './errors.js';
export { resolveInRoot, type ResolveInRootOptions } from './resolve-in-root.js';
export { removeStubs } from './stubs.js';
export { resolveUser, type ResolvedUser } from './user.js';
export { checkRuncVersion, RUNC_CVES, type RuncCve, type RuncVerdict, type RuncVersion } from './runtime-check.js';
export { DEFAULT_CAPABILITIES, DEFAULT_HOSTNAME } from './prepare.js';
import { stepNofileLimit } from './prepare.js';

async function createRunc(stateDir: string): Promise<Executor> {
  const runc = await findExecutable('runc');
  if (runc === undefined) {
    throw new ExecutorError('FAILED_PRECONDITION', 'isolation runc needs the runc binary, found none in PATH; install the Debian package runc', { missingPackage: 'runc' });
  }
  const verdict = checkRuncVersion(await cachedRuncVersionOutput(runc, join(stateDir, 'runc-version.json')), await readDebianRuncChangelog());
  if (verdict.vulnerable.length > 0) {
    throw new ExecutorError(
      'FAILED_PRECONDITION',
      `refusing runc ${verdict.version || '(unknown version)'}${verdict.commit !== undefined ? ` (build ${verdict.commit})` : ''} at ${runc}: vulnerable to ${verdict.vulnerable.join(', ')}; expected runc >= 1.1.12 or a distribution build whose changelog lists the fix`,
    );
  }
  // runc (as root) always creates a cgroup for the container; there is no "no cgroup" mode.
  if (!(await probeCgroupParent())) {
    throw new ExecutorError('FAILED_PRECONDITION', 'runc cannot create cgroups on this host: expected a writable /sys/fs/cgroup hierarchy, found a read-only or missing one');
  }
  const bash = await findExecutable('bash');
  if (bash === undefined) {
    throw new ExecutorError('FAILED_PRECONDITION', 'the runc launcher needs bash, found none in PATH; install the Debian package bash', { missingPackage: 'bash' });
  }
  return new RuncExecutor({ runc, bash, stateDir, nofile: await stepNofileLimit() });
}

async function createUnshare(stateDir: string): Promise<Executor> {
  const need: [keyof UnshareTools, string, string][] = [
    ['unshare', 'unshare', 'util-linux'],
    ['setpriv', 'setpriv', 'util-linux'],
    ['mount', 'mount', 'mount'],
    ['bash', 'bash', 'bash'],
    ['env', 'env', 'coreutils'],
    ['prlimit', 'prlimit', 'util-linux'],
  ];
  const found: Partial<Record<keyof UnshareTools, string>> = {};
  for (const [key, bin, pkg] of need) {
    const p = await findExecutable(bin);
    if (p === undefined) {
      throw new ExecutorError('FAILED_PRECONDITION', `isolation unshare needs ${bin}, found none in PATH; install the Debian package ${pkg}`, { missingPackage: pkg });
    }
    found[key] = p;
  }
  const tools: UnshareTools = {
    unshare: found.unshare as string,
    setpriv: found.setpriv as string,
    mount: found.mount as string,
    bash: found.bash as string,
    env: found.env as string,
    prlimit: found.prlimit as string,
    ip: await findExecutable('ip'),
  };
  return new UnshareExecutor(tools, stateDir, await stepNofileLimit());
}

/**
 * Creates an executor after checking the host. Both backends need root. `'auto'` picks
 * runc when it is installed, not vulnerable to a known breakout and can create cgroups,
 * and otherwise unshare. A requested backend that cannot run fails with an
 * `ExecutorError` (`FAILED_PRECONDITION`) naming the Debian package to install or the CVE.
 */
export async function createExecutor(opts: ExecutorOptions): Promise<Executor> {
  if (!isAbsolute(opts.stateDir)) {
    throw new ExecutorError('INVALID_ARGUMENT', `stateDir must be an absolute path, found ${JSON.stringify(opts.stateDir)}`);
  }
  if (process.getuid?.() !== 0) {
    throw new ExecutorError('FAILED_PRECONDITION', `the executor needs root (namespaces, mounts, chroot), found uid ${process.getuid?.() ?? 'unknown'}; rootless builds are not supported`);
  }
  await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
  const isolation = opts.isolation ?? 'auto';
  switch (isolation) {
    case 'runc':
      return createRunc(opts.stateDir);
    case 'unshare':
      return createUnshare(opts.stateDir);
    case 'auto': {
      if ((await findExecutable('runc')) !== undefined) {
        try {
          return await createRunc(opts.stateDir);
        } catch (err) {
          // A vulnerable or unusable runc is skipped in favour of unshare, never used.
          if (!(err instanceof ExecutorError && err.code === 'FAILED_PRECONDITION')) throw err;
        }
      }
      return createUnshare(opts.stateDir);
    }
    default: {
      const never: never = isolation;
      throw new ExecutorError('INVALID_ARGUMENT', `isolation must be auto, runc or unshare, found ${JSON.stringify(never)}`);
    }
  }
}
