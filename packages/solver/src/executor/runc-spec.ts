/**
 * OCI runtime spec (config.json) generation for the runc backend, following Docker's and
 * BuildKit's defaults.
 */
import { DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS, type PreparedStep } from './prepare.js';
import { defaultSeccompProfile, type SeccompProfile } from './seccomp.js';
import type { NetworkMode, ProcessSpec } from './types.js';

/** The subset of the OCI runtime spec tsbuild writes. */
export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[]; inheritable: string[]; ambient: string[] };
    rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: { destination: string; type: string; source: string; options?: string[] }[];
  linux: {
    namespaces: { type: string }[];
    maskedPaths: string[];
    readonlyPaths: string[];
    cgroupsPath?: string;
    resources: { devices: { allow: boolean; access: string }[] };
    seccomp: SeccompProfile;
  };
}

/** Inputs of {@link buildRuncSpec}. */
export interface RuncSpecInput {
  rootfs: string;
  process: ProcessSpec;
  network: NetworkMode;
  prepared: PreparedStep;
  /** runc cgroupsPath, e.g. `/tsbuild/<id>`; omitted when cgroups are not usable. */
  cgroupsPath: string | undefined;
  /** RLIMIT_NOFILE (soft = hard), see `stepNofileLimit`. */
  nofile: number;
}

/**
 * Builds the runtime spec: mount/pid/ipc/uts namespaces (plus network for `'none'`, where
 * runc itself brings `lo` up), Docker's default capabilities (effective/permitted only for
 * uid 0, as Docker does since its CVE-2022-24769 fix; inheritable and ambient empty),
 * no_new_privs, Docker's masked and read-only paths, /proc, /dev (+pts, shm, mqueue), /sys
 * read-only, the generated /etc files bound read-only, user mounts after those, and the
 * seccomp filter of `seccomp.ts` (what Docker's default profile refuses).
 */
export function buildRuncSpec(input: RuncSpecInput): OciSpec {
  const { prepared: prep, process: p } = input;
  const caps = [...DEFAULT_CAPABILITIES];
  const userCaps = p.user.uid === 0 ? caps : [];
  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (input.network === 'none') namespaces.push({ type: 'network' });

  const mounts: OciSpec['mounts'] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: prep.fileTargets.hosts, type: 'bind', source: prep.files.hosts, options: ['rbind', 'rprivate', 'ro'] },
    { destination: prep.fileTargets.resolvConf, type: 'bind', source: prep.files.resolvConf, options: ['rbind', 'rprivate', 'ro'] },
    { destination: prep.fileTargets.hostname, type: 'bind', source: prep.files.hostname, options: ['rbind', 'rprivate', 'ro'] },
  ];
  for (const m of prep.mounts) {
    if (m.type === 'bind') {
      mounts.push({ destination: m.destination, type: 'bind', source: m.source as string, options: ['rbind', 'rprivate', ...(m.readonly ? ['ro'] : [])] });
    } else {
      const opts = ['nosuid', 'nodev', 'mode=1777'];
      if (m.size !== undefined) opts.push(`size=${m.size}`);
      mounts.push({ destination: m.destination, type: 'tmpfs', source: 'tmpfs', options: opts });
    }
  }

  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: p.user.uid, gid: p.user.gid, ...(p.user.additionalGids !== undefined && p.user.additionalGids.length > 0 ? { additionalGids: [...p.user.additionalGids] } : {}) },
      args: [...p.args],
      env: [...prep.env],
      cwd: prep.cwd,
      capabilities: { bounding: caps, effective: userCaps, permitted: userCaps, inheritable: [], ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: input.nofile, soft: input.nofile }],
      noNewPrivileges: true,
    },
    root: { path: input.rootfs, readonly: false },
    hostname: prep.hostname,
    mounts,
    linux: {
      namespaces,
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: [...READONLY_PATHS],
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      seccomp: defaultSeccompProfile(),
    },
  };
  if (input.cgroupsPath !== undefined) spec.linux.cgroupsPath = input.cgroupsPath;
  return spec;
}
