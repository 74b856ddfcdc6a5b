/**
 * Backend-independent preparation of a step: request validation, mount-point stubs inside
 * the rootfs (resolved as if chrooted), and the generated /etc/hosts, /etc/resolv.conf and
 * /etc/hostname files.
 */
import { lstat, mkdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { ExecutorError } from './errors.js';
import { ensureInRoot, resolveContainerPath, type StubKind } from './resolve-in-root.js';
import type { RunRequest } from './types.js';
import { homeForUid } from './user.js';

/** Hostname used when the request has none (BuildKit's, so scripts behave alike). */
export const DEFAULT_HOSTNAME = 'buildkitsandbox';

/** Docker's default capability set, for bounding (and effective/permitted when uid is 0). */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** Docker's default masked paths (bind-mounted over with /dev/null or an empty ro tmpfs). */
export const MASKED_PATHS: readonly string[] = [
  '/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];

/** Docker's default read-only paths. */
export const READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Docker's default RLIMIT_NOFILE. */
export const NOFILE_LIMIT = 1048576;

/**
 * RLIMIT_NOFILE for steps: Docker's 1048576, clamped to the builder's own hard limit
 * (raising a hard limit needs CAP_SYS_RESOURCE, which the builder may not have).
 */
export async function stepNofileLimit(): Promise<number> {
  const text = await readFile('/proc/self/limits', 'utf8');
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  const hard = m?.[2];
  if (hard === undefined || hard === 'unlimited') return NOFILE_LIMIT;
  return Math.min(NOFILE_LIMIT, Number(hard));
}

/** A user mount after resolution inside the rootfs. */
export interface ResolvedMount {
  type: 'bind' | 'tmpfs';
  /** Host source (bind) or undefined (tmpfs). */
  source: string | undefined;
  /** Absolute path as seen inside the step, free of symlinks. */
  destination: string;
  /** Host path of the mount point inside the rootfs. */
  hostTarget: string;
  readonly: boolean;
  size: number | undefined;
}

/** Everything a backend needs beyond the request. */
export interface PreparedStep {
  /** Entries created as mount points (relative to rootfs). */
  stubs: string[];
  mounts: ResolvedMount[];
  /** Working directory as seen inside the step, free of symlinks. */
  cwd: string;
  /** The request's env plus HOME (from passwd, else /) when it had none, as runc and Docker do. */
  env: string[];
  hostname: string;
  /** Host paths of the generated files, to bind read-only over /etc/... */
  files: { hosts: string; resolvConf: string; hostname: string };
  /** Symlink-free in-container destinations of the three files (usually /etc/hosts...). */
  fileTargets: { hosts: string; resolvConf: string; hostname: string };
}

const MAX_ID = 2147483647;
const HOSTNAME_RE = /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})$/;

function fail(message: string): never {
  throw new ExecutorError('INVALID_ARGUMENT', message);
}

/** Rejects malformed requests before anything touches the disk. */
export function validateRequest(req: RunRequest): void {
  if (!isAbsolute(req.rootfs)) fail(`rootfs must be an absolute path, found ${JSON.stringify(req.rootfs)}`);
  const p = req.process;
  if (p.args.length === 0) fail('process args must not be empty, found []');
  for (const e of p.env) {
    if (!e.includes('=') || e.startsWith('=')) fail(`env entries must look like KEY=value, found ${JSON.stringify(e)}`);
    if (e.includes('\0')) fail(`env entries must not contain NUL bytes, found ${JSON.stringify(e)}`);
  }
  for (const a of p.args) if (a.includes('\0')) fail(`args must not contain NUL bytes, found ${JSON.stringify(a)}`);
  if (!p.cwd.startsWith('/')) fail(`cwd must be an absolute path, found ${JSON.stringify(p.cwd)}`);
  const ids = [p.user.uid, p.user.gid, ...(p.user.additionalGids ?? [])];
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id > MAX_ID) fail(`uids and gids must be integers in range 0-${MAX_ID}, found ${id}`);
  }
  if (p.hostname !== undefined && !HOSTNAME_RE.test(p.hostname)) {
    fail(`hostname must be 1-63 letters, digits or '-', found ${JSON.stringify(p.hostname)}`);
  }
  const validNet: readonly string[] = ['default', 'none', 'host'];
  if (!validNet.includes(req.network)) fail(`network must be one of default, none, host, found ${JSON.stringify(req.network)}`);
  for (const m of req.mounts) {
    if (!m.target.startsWith('/')) fail(`mount target must be an absolute path, found ${JSON.stringify(m.target)}`);
    if (m.type === 'bind' && !isAbsolute(m.source)) fail(`bind mount source must be an absolute host path, found ${JSON.stringify(m.source)}`);
    if (m.type === 'tmpfs' && m.size !== undefined && (!Number.isInteger(m.size) || m.size <= 0)) {
      fail(`tmpfs size must be a positive integer number of bytes, found ${m.size}`);
    }
  }
}

/** `/etc/hosts` as BuildKit writes it: localhost plus the sandbox hostname. */
export function hostsFile(hostname: string): string {
  return `127.0.0.1\tlocalhost ${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
}

/**
 * `/etc/resolv.conf` for the step: the host's, as is (steps share the host's network
 * namespace, so even a 127.0.0.53 stub resolver works); when the host file has no
 * nameserver, Docker's fallback public resolvers are appended.
 */
export function resolvConfFile(hostResolvConf: string | undefined): string {
  const base = hostResolvConf ?? '';
  if (/^\s*nameserver\s+\S+/m.test(base)) return base.endsWith('\n') ? base : base + '\n';
  const prefix = base === '' || base.endsWith('\n') ? base : base + '\n';
  return `${prefix}nameserver 8.8.8.8\nnameserver 8.8.4.4\n`;
}

async function readHostResolvConf(): Promise<string | undefined> {
  try {
    return await readFile('/etc/resolv.conf', 'utf8');
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT') return undefined;
    throw new ExecutorError('INTERNAL', 'cannot read the host /etc/resolv.conf', { cause: err });
  }
}

function depth(p: string): number {
  return p.split('/').filter((c) => c !== '').length;
}

/** Paths inside the step that are covered by the executor's own mounts. */
function underVirtualFs(containerPath: string): boolean {
  return ['/proc', '/sys', '/dev'].some((v) => containerPath === v || containerPath.startsWith(v + '/'));
}

/**
 * Validates the request, creates mount-point stubs inside the rootfs and the step's
 * generated /etc files inside `privateDir` (which must exist and be private to this step).
 * Every stub is appended to `stubs` as soon as it exists, so the caller can clean up even
 * when preparation fails half-way.
 */
export async function prepareStep(req: RunRequest, privateDir: string, stubs: string[]): Promise<PreparedStep> {
  validateRequest(req);
  let rootStat;
  try {
    rootStat = await stat(req.rootfs);
  } catch (err) {
    throw new ExecutorError('NOT_FOUND', `rootfs ${req.rootfs} does not exist`, { cause: err });
  }
  if (!rootStat.isDirectory()) throw new ExecutorError('INVALID_ARGUMENT', `rootfs ${req.rootfs} must be a directory, found a non-directory`);

  const ensure = async (path: string, kind: StubKind): Promise<{ containerPath: string; hostPath: string }> => {
    const r = await ensureInRoot(req.rootfs, path, kind);
    stubs.push(...r.created);
    return r;
  };

  // The working directory: refuse anything that would land on a kernel filesystem
  // (WORKDIR /proc/self/fd/N is the CVE-2024-21626 attack shape), create it if missing
  // like BuildKit does. It is part of the step's output, not a stub.
  const cwd = await resolveContainerPath(req.rootfs, req.process.cwd);
  if (underVirtualFs(cwd)) {
    throw new ExecutorError('INVALID_ARGUMENT', `working directory must be inside the container root filesystem, found ${JSON.stringify(req.process.cwd)} resolving to ${cwd} on a kernel filesystem`);
  }
  await ensureInRoot(req.rootfs, cwd, 'dir');

  // The runtimes mount their own /proc, /dev and /sys and create entries in them (runc's
  // /dev/fd, /dev/ptmx... symlinks) by host path before pivoting into the root: a base
  // layer whose /dev is a symlink to a host directory made runc write there. Refuse it.
  for (const p of ['/proc', '/dev', '/sys']) {
    const st = await lstat(join(req.rootfs, p)).catch(() => undefined);
    if (st?.isSymbolicLink() === true) {
      const target = await readlink(join(req.rootfs, p)).catch(() => '?');
      throw new ExecutorError('FAILED_PRECONDITION', `the root filesystem's ${p} must be a directory (the runtime mounts its own there), found a symlink to ${JSON.stringify(target)}`);
    }
  }
  await ensure('/proc', 'dir');
  await ensure('/dev', 'dir');
  await ensure('/sys', 'dir');
  const hostsT = await ensure('/etc/hosts', 'file');
  const resolvT = await ensure('/etc/resolv.conf', 'file');
  const hostnameT = await ensure('/etc/hostname', 'file');

  const mounts: ResolvedMount[] = [];
  const ordered = [...req.mounts].sort((a, b) => depth(a.target) - depth(b.target));
  for (const m of ordered) {
    let kind: StubKind = 'dir';
    if (m.type === 'bind') {
      let st;
      try {
        st = await stat(m.source);
      } catch (err) {
        throw new ExecutorError('NOT_FOUND', `bind mount source ${m.source} does not exist`, { cause: err });
      }
      kind = st.isDirectory() ? 'dir' : 'file';
    }
    const t = await ensure(m.target, kind);
    mounts.push({
      type: m.type,
      source: m.type === 'bind' ? m.source : undefined,
      destination: t.containerPath,
      hostTarget: t.hostPath,
      readonly: m.type === 'bind' ? m.readonly : false,
      size: m.type === 'tmpfs' ? m.size : undefined,
    });
  }

  const hostname = req.process.hostname ?? DEFAULT_HOSTNAME;
  await mkdir(privateDir, { recursive: true });
  const files = {
    hosts: join(privateDir, 'hosts'),
    resolvConf: join(privateDir, 'resolv.conf'),
    hostname: join(privateDir, 'hostname'),
  };
  await writeFile(files.hosts, hostsFile(hostname), { mode: 0o644 });
  await writeFile(files.resolvConf, resolvConfFile(await readHostResolvConf()), { mode: 0o644 });
  await writeFile(files.hostname, hostname + '\n', { mode: 0o644 });

  const env = [...req.process.env];
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${await homeForUid(req.rootfs, req.process.user.uid)}`);

  return {
    stubs: [...stubs],
    mounts,
    cwd,
    env,
    hostname,
    files,
    fileTargets: { hosts: hostsT.containerPath, resolvConf: resolvT.containerPath, hostname: hostnameT.containerPath },
  };
}
