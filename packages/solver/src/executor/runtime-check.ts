/**
 * Host checks done once when an executor is created: which tools exist, whether the
 * installed runc is safe, whether runc can create cgroups here.
 */
import { access, constants, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { nodeZlib } from '@tsbuild/snapshotter';
import { runTool } from './process.js';

/** A known runc breakout and the first upstream release that fixes it. */
export interface RuncCve {
  id: string;
  title: string;
  fixedIn: RuncVersion;
}

/** A parsed upstream runc version (`1.1.12`, `1.0.0-rc95`). */
export interface RuncVersion {
  major: number;
  minor: number;
  patch: number;
  /** Release-candidate number; `undefined` for a final release (which sorts after every rc). */
  rc: number | undefined;
}

/** Breakouts the executor refuses to run under. */
export const RUNC_CVES: readonly RuncCve[] = [
  { id: 'CVE-2021-30465', title: 'symlink-exchange mount race', fixedIn: { major: 1, minor: 0, patch: 0, rc: 95 } },
  { id: 'CVE-2024-21626', title: 'leaky vessels: leaked fd gives access to the host filesystem', fixedIn: { major: 1, minor: 1, patch: 12, rc: undefined } },
];

/** Verdict of {@link checkRuncVersion}. */
export interface RuncVerdict {
  /** The `runc version` line's value, e.g. `1.1.5+ds1`. */
  version: string;
  /** The `commit:` line's value, e.g. `1.1.5+ds1-1+deb12u1` on Debian. */
  commit: string | undefined;
  /** CVEs the upstream version is affected by. */
  affected: string[];
  /** Of those, the ones the distribution changelog says are patched in this exact build. */
  patchedByDistro: string[];
  /** CVEs neither fixed upstream nor patched by the distribution: refuse to run. */
  vulnerable: string[];
}

/** Parses `1.1.5+ds1`, `1.0.0-rc95`, `1.2.0-rc.1` (build metadata after `+` ignored). */
export function parseRuncVersion(v: string): RuncVersion | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)(?:-rc\.?(\d+))?/.exec(v.trim());
  if (m === null) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), rc: m[4] === undefined ? undefined : Number(m[4]) };
}

function compare(a: RuncVersion, b: RuncVersion): number {
  return (
    a.major - b.major ||
    a.minor - b.minor ||
    a.patch - b.patch ||
    (a.rc ?? Number.MAX_SAFE_INTEGER) - (b.rc ?? Number.MAX_SAFE_INTEGER)
  );
}

/**
 * Decides whether a runc build is safe. Upstream versions at or above each fix are safe.
 * An older version is accepted only when it is a distribution build whose package version
 * (the `commit:` line Debian's runc prints, e.g. `1.1.5+ds1-1+deb12u1`) is exactly the top
 * entry of the package's changelog, and that changelog names the CVE id: Debian backports
 * security fixes without changing the upstream version number.
 */
export function checkRuncVersion(versionOutput: string, debianChangelog?: string): RuncVerdict {
  const version = /^runc version\s+(\S+)/m.exec(versionOutput)?.[1];
  if (version === undefined) {
    return { version: '', commit: undefined, affected: [], patchedByDistro: [], vulnerable: ['unparseable `runc --version` output'] };
  }
  const commit = /^commit:\s*(\S+)/m.exec(versionOutput)?.[1];
  const parsed = parseRuncVersion(version);
  if (parsed === undefined) {
    return { version, commit, affected: [], patchedByDistro: [], vulnerable: [`unparseable runc version ${version}`] };
  }
  const affected = RUNC_CVES.filter((c) => compare(parsed, c.fixedIn) < 0).map((c) => c.id);
  const topEntry = debianChangelog === undefined ? undefined : /^\S+ \(([^)]+)\)/.exec(debianChangelog)?.[1];
  const sameBuild = commit !== undefined && topEntry !== undefined && topEntry === commit;
  const patchedByDistro = sameBuild ? affected.filter((id) => (debianChangelog as string).includes(id)) : [];
  const vulnerable = affected.filter((id) => !patchedByDistro.includes(id));
  return { version, commit, affected, patchedByDistro, vulnerable };
}

/** Debian's changelog for the runc package, if installed. */
export async function readDebianRuncChangelog(path = '/usr/share/doc/runc/changelog.Debian.gz'): Promise<string | undefined> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    // Not a Debian-packaged runc: only the upstream version number counts.
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT') return undefined;
    throw err;
  }
  return nodeZlib().gunzipSync(data).toString('utf8');
}

/** Finds an executable in PATH (or the usual sbin dirs, which non-login PATHs may lack). */
export async function findExecutable(name: string): Promise<string | undefined> {
  const dirs = [...(process.env['PATH'] ?? '').split(':'), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const d of dirs) {
    if (d === '') continue;
    const p = join(d, name);
    try {
      const st = await stat(p);
      if (!st.isFile()) continue;
      await access(p, constants.X_OK);
      return p;
    } catch {
      continue;
    }
  }
  return undefined;
}

/** Output of `runc --version`. */
export async function runcVersionOutput(runc: string): Promise<string> {
  const r = await runTool(runc, ['--version']);
  return r.stdout;
}

/**
 * `runc --version`'s output, remembered in `cacheFile` for this very binary: the record
 * is keyed by the file's device, inode, size, mtime and ctime (any replacement, rewrite
 * or chmod changes one), so the first RUN of a build does not wait for a Go process
 * start (10–40 ms here under load). The version check itself runs on every call.
 */
export async function cachedRuncVersionOutput(runc: string, cacheFile: string): Promise<string> {
  const st = await stat(runc, { bigint: true });
  const key = [runc, st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs].map(String).join(' ');
  try {
    const saved = JSON.parse(await readFile(cacheFile, 'utf8')) as { key?: unknown; output?: unknown };
    if (saved.key === key && typeof saved.output === 'string') return saved.output;
  } catch {
    /* no or unreadable record: ask runc */
  }
  const output = await runcVersionOutput(runc);
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify({ key, output }));
  await rename(tmp, cacheFile);
  return output;
}

/**
 * Whether runc will be able to create the step's cgroup under a `tsbuild` parent:
 * cgroup v2 (unified) or v1 with a writable hierarchy. Creates the parent if needed.
 */
export async function probeCgroupParent(): Promise<boolean> {
  const base = '/sys/fs/cgroup';
  let dirs: string[];
  try {
    await stat(join(base, 'cgroup.controllers'));
    dirs = [base];
  } catch {
    dirs = ['memory', 'pids', 'cpu', 'devices', 'freezer'].map((c) => join(base, c));
  }
  for (const d of dirs) {
    try {
      await stat(d);
    } catch {
      continue;
    }
    try {
      await mkdir(join(d, 'tsbuild'), { recursive: true });
    } catch {
      return false;
    }
  }
  return true;
}
