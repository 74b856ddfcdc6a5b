/**
 * The unshare backend (no OCI runtime): util-linux `unshare` creates mount/pid/ipc/uts
 * (and net) namespaces, a bash script (host tools only, nothing from the rootfs) sets up
 * /dev, /sys, masked paths and mounts inside the new mount namespace, then
 * `env -i` + `setpriv` (bounding set, groups, no_new_privs) + `unshare --root --wd --setuid`
 * chroot into the rootfs, drop to the step's uid and exec the step as pid 1.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AbortError, ExecutorError } from './errors.js';
import { DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS, prepareStep, type PreparedStep } from './prepare.js';
import { CLOSE_INHERITED_FDS, pathExists, spawnStreaming } from './process.js';
import { removeStubs } from './stubs.js';
import type { Executor, RunRequest, RunResult } from './types.js';

/** Host tools the unshare backend runs (absolute paths). */
export interface UnshareTools {
  unshare: string;
  setpriv: string;
  bash: string;
  mount: string;
  env: string;
  /** util-linux prlimit, to give the step its RLIMIT_NOFILE. */
  prlimit: string;
  /** iproute2's `ip`, needed only for network 'none' (to bring `lo` up). */
  ip: string | undefined;
}

/** Quotes a string for bash (single quotes; embedded quotes closed and escaped). */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

const DEVICES: readonly string[] = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

function hostPath(root: string, containerPath: string): string {
  return join(root, containerPath);
}

/** Builds the setup script run as pid 1 of the new namespaces. */
export function buildSetupScript(req: RunRequest, prep: PreparedStep, tools: UnshareTools, nofile: number, setupLog: string, readyFile: string): string {
  const q = shQuote;
  const R = req.rootfs;
  const M = q(tools.mount);
  const lines: string[] = [
    'set -eu',
    // Close every inherited fd above 2 (fds the builder's own parent leaked without CLOEXEC).
    CLOSE_INHERITED_FDS,
    // Setup diagnostics go to a private log, not to the step's stderr.
    `exec 3>&2 2>${q(setupLog)}`,
    // No device cgroup here, so the step keeps CAP_MKNOD (like Docker) but every filesystem it
    // can write is nodev: nodes it creates cannot be opened. The rootfs first:
    `${M} --rbind ${q(R)} ${q(R)}`,
    `${M} -o remount,bind,nodev ${q(R)}`,
    `${M} -t tmpfs -o nosuid,nodev,strictatime,mode=755,size=65536k tmpfs ${q(hostPath(R, '/dev'))}`,
  ];
  // The only usable devices: bind mounts of the host's nodes (a bind keeps its source's flags).
  for (const name of DEVICES) {
    const h = q(hostPath(R, '/dev/' + name));
    lines.push(`: > ${h}`, `${M} --bind ${q('/dev/' + name)} ${h}`);
  }
  lines.push(
    `mkdir -m 755 ${q(hostPath(R, '/dev/pts'))} ${q(hostPath(R, '/dev/shm'))} ${q(hostPath(R, '/dev/mqueue'))}`,
    `${M} -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5 devpts ${q(hostPath(R, '/dev/pts'))}`,
    `${M} -t tmpfs -o nosuid,noexec,nodev,mode=1777,size=65536k shm ${q(hostPath(R, '/dev/shm'))}`,
    `${M} -t mqueue -o nosuid,noexec,nodev mqueue ${q(hostPath(R, '/dev/mqueue'))}`,
    `ln -s pts/ptmx ${q(hostPath(R, '/dev/ptmx'))}`,
    `ln -s /proc/self/fd ${q(hostPath(R, '/dev/fd'))}`,
    `ln -s /proc/self/fd/0 ${q(hostPath(R, '/dev/stdin'))}`,
    `ln -s /proc/self/fd/1 ${q(hostPath(R, '/dev/stdout'))}`,
    `ln -s /proc/self/fd/2 ${q(hostPath(R, '/dev/stderr'))}`,
    `${M} -t sysfs -o ro,nosuid,noexec,nodev sysfs ${q(hostPath(R, '/sys'))}`,
  );
  for (const p of MASKED_PATHS) {
    const h = q(hostPath(R, p));
    lines.push(`if [ -d ${h} ]; then ${M} -t tmpfs -o ro,nosuid,nodev,noexec,size=0 tmpfs ${h}; elif [ -e ${h} ]; then ${M} --bind /dev/null ${h}; fi`);
  }
  for (const p of READONLY_PATHS) {
    const h = q(hostPath(R, p));
    lines.push(`if [ -e ${h} ]; then ${M} --bind ${h} ${h}; ${M} -o remount,bind,ro,nosuid,nodev,noexec ${h}; fi`);
  }
  const files: [string, string][] = [
    [prep.files.hosts, prep.fileTargets.hosts],
    [prep.files.resolvConf, prep.fileTargets.resolvConf],
    [prep.files.hostname, prep.fileTargets.hostname],
  ];
  for (const [src, dst] of files) {
    const h = q(hostPath(R, dst));
    lines.push(`${M} --bind ${q(src)} ${h}`, `${M} -o remount,bind,ro ${h}`);
  }
  for (const m of prep.mounts) {
    const h = q(m.hostTarget);
    if (m.type === 'bind') {
      lines.push(`${M} --rbind ${q(m.source as string)} ${h}`, `${M} -o remount,bind,nodev${m.readonly ? ',ro' : ''} ${h}`);
    } else {
      lines.push(`${M} -t tmpfs -o nosuid,nodev,mode=1777${m.size !== undefined ? `,size=${m.size}` : ''} tmpfs ${h}`);
    }
  }
  lines.push(`printf '%s' ${q(prep.hostname)} > /proc/sys/kernel/hostname`);
  if (req.network === 'none') lines.push(`${q(tools.ip as string)} link set lo up`);

  const u = req.process.user;
  const groups = u.additionalGids !== undefined && u.additionalGids.length > 0 ? `--groups=${u.additionalGids.join(',')}` : '--clear-groups';
  const caps = DEFAULT_CAPABILITIES.map((c) => '+' + c.slice('CAP_'.length).toLowerCase()).join(',');
  const finalArgv = [
    tools.env, '-i', ...prep.env,
    tools.prlimit, `--nofile=${nofile}:${nofile}`, '--',
    tools.setpriv, `--regid=${u.gid}`, groups, `--bounding-set=-all,${caps}`, '--inh-caps=-all', '--no-new-privs', '--',
    tools.unshare, `--root=${R}`, `--wd=${prep.cwd}`, `--setuid=${u.uid}`, '--',
    ...req.process.args,
  ];
  lines.push(`: > ${q(readyFile)}`, 'exec 2>&3 3>&-', `exec ${finalArgv.map(q).join(' ')}`);
  return lines.join('\n') + '\n';
}

/** Runs steps with util-linux unshare + chroot; see the README for what it isolates less than runc. */
export class UnshareExecutor implements Executor {
  readonly name = 'unshare' as const;
  readonly #tools: UnshareTools;
  readonly #stateDir: string;
  readonly #nofile: number;

  constructor(tools: UnshareTools, stateDir: string, nofile: number) {
    this.#tools = tools;
    this.#stateDir = stateDir;
    this.#nofile = nofile;
  }

  async run(req: RunRequest): Promise<RunResult> {
    if (req.signal?.aborted === true) throw new AbortError(undefined, { cause: req.signal.reason });
    if (req.network === 'none' && this.#tools.ip === undefined) {
      throw new ExecutorError('FAILED_PRECONDITION', 'network none needs `ip` to bring up the loopback interface, found none in PATH; install the Debian package iproute2', { missingPackage: 'iproute2' });
    }
    const id = `tsbuild-${process.pid}-${randomBytes(8).toString('hex')}`;
    const priv = join(this.#stateDir, 'unshare', id);
    await mkdir(priv, { recursive: true, mode: 0o700 });
    const stubs: string[] = [];
    try {
      const prep = await prepareStep(req, priv, stubs);
      const setupLog = join(priv, 'setup.log');
      const readyFile = join(priv, 'ready');
      const script = buildSetupScript(req, prep, this.#tools, this.#nofile, setupLog, readyFile);
      const nsFlags = ['--mount', '--pid', '--fork', '--ipc', '--uts', ...(req.network === 'none' ? ['--net'] : []), '--propagation', 'private', '--kill-child', `--mount-proc=${join(req.rootfs, 'proc')}`];
      // Node hands children socketpairs, but steps expect pipes (`echo > /dev/stdout` cannot
      // open a socket). A host-side bash swaps them for pipes drained by `cat` (outside the
      // namespaces), then execs unshare under the same pid.
      const pipeWrap = `${CLOSE_INHERITED_FDS}; exec "$@"${req.stdin !== undefined ? ' < <(exec cat)' : ''} > >(exec cat) 2> >(exec cat >&2)`;
      const launcher = [this.#tools.unshare, ...nsFlags, '--', this.#tools.bash, '--noprofile', '--norc', '-c', script, 'tsbuild-setup'];
      const child = spawnStreaming(this.#tools.bash, ['--noprofile', '--norc', '-c', pipeWrap, 'tsbuild-launch', ...launcher], {
        env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
        stdin: req.stdin,
        onStdout: req.onStdout,
        onStderr: req.onStderr,
      });
      let aborted = false;
      const onAbort = (): void => {
        aborted = true;
        void killNamespace(child.pid).finally(() => child.kill('SIGKILL'));
      };
      req.signal?.addEventListener('abort', onAbort, { once: true });
      let code: number;
      try {
        code = await child.done;
      } finally {
        req.signal?.removeEventListener('abort', onAbort);
      }
      if (aborted) throw new AbortError(undefined, { cause: req.signal?.reason });
      if (!(await pathExists(readyFile))) {
        const log = await readFile(setupLog, 'utf8').catch((err: unknown) => `(no setup log: ${String(err)})`);
        throw new ExecutorError('INTERNAL', `sandbox setup failed before the step started (exit code ${code}): ${log.trim()}`);
      }
      return { exitCode: code, createdStubs: prep.stubs };
    } finally {
      await rm(priv, { recursive: true, force: true });
      // pid 1 is reaped, so the mount namespace is gone: drop the stubs that are still empty.
      await removeStubs(req.rootfs, stubs);
    }
  }
}


/**
 * SIGKILLs the pid-namespace init (unshare's forked child); the kernel then kills every
 * other process in that namespace. PR_SET_PDEATHSIG (--kill-child) alone is not enough:
 * the kernel clears it when the step switches to a non-root uid.
 */
async function killNamespace(unsharePid: number): Promise<void> {
  if (unsharePid <= 0) return;
  let tasks: string[];
  try {
    tasks = await readdir(`/proc/${unsharePid}/task`);
  } catch {
    return; // already gone
  }
  for (const t of tasks) {
    let children = '';
    try {
      children = await readFile(`/proc/${unsharePid}/task/${t}/children`, 'utf8');
    } catch {
      continue; // thread exited meanwhile
    }
    for (const c of children.split(/\s+/).filter((x) => x !== '')) {
      try {
        process.kill(Number(c), 'SIGKILL');
      } catch {
        // exited between the read and the kill
      }
    }
  }
}
