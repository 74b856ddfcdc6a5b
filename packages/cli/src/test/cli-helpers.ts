/** Runs the real `tsbuild` binary as a user would: a spawned process with its own store. */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const BIN = join(REPO_ROOT, 'packages', 'cli', 'bin', 'tsbuild.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `viaShebang`: the launcher executed itself (its shebang), as a user's shell runs it,
 * rather than `node bin/tsbuild.js`; `cleanEnv`: only PATH and HOME are inherited.
 */
export function tsbuild(root: string, args: readonly string[], opts: { input?: string; env?: Record<string, string>; cwd?: string; viaShebang?: boolean; cleanEnv?: boolean } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const inherited = opts.cleanEnv ? { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' } : process.env;
    const p = spawn(opts.viaShebang ? BIN : process.execPath, opts.viaShebang ? args : [BIN, ...args], {
      cwd: opts.cwd ?? REPO_ROOT,
      env: { ...inherited, TSBUILD_ROOT: root, ...(opts.env ?? {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    p.stdin.end(opts.input ?? '');
  });
}

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Fails (CI or root) or skips (non-root developer) when a prerequisite is missing, naming the package. */
export function requirePrereq(t: { skip(msg: string): void }, ok: boolean, what: string, pkg: string): boolean {
  if (ok) return true;
  const msg = `${what} is missing: install the Debian package ${pkg}`;
  if (process.env.CI === 'true' || process.getuid?.() === 0) throw new Error(msg);
  t.skip(msg);
  return false;
}

export function requireRoot(t: { skip(msg: string): void }): boolean {
  if (process.getuid?.() === 0) return true;
  if (process.env.CI === 'true') throw new Error('these tests need root (namespaces, overlay mounts)');
  t.skip('these tests need root (namespaces, overlay mounts)');
  return false;
}

/** A temporary store with busybox:local imported through the CLI. */
export async function storeWithBusybox(): Promise<{ root: string; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'tsbuild-cli-'));
  const rootfs = join(root, 'bb-rootfs');
  execFileSync('bash', [join(REPO_ROOT, 'scripts', 'make-busybox-rootfs.sh'), rootfs], { stdio: 'inherit' });
  const r = await tsbuild(root, ['import', '--change', 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', rootfs, 'busybox:local']);
  if (r.code !== 0) throw new Error(`import failed: ${r.stderr}`);
  await rm(rootfs, { recursive: true, force: true });
  return {
    root,
    cleanup: async () => {
      spawnSync('sh', ['-c', `grep -o " ${root}[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l`], { stdio: 'ignore' });
      await rm(root, { recursive: true, force: true });
    },
  };
}

const DOCKER = '/usr/bin/docker';
const DOCKER_ENV = { ...process.env, DOCKER_HOST: 'unix:///var/run/docker.sock' };

/** Debian's docker client against the dockerd that scripts/start-services.sh starts. */
export function docker(args: readonly string[], input?: Buffer): CliResult {
  const r = spawnSync(DOCKER, args, { env: DOCKER_ENV, input, maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, stdout: r.stdout?.toString() ?? '', stderr: r.stderr?.toString() ?? '' };
}

export function dockerAvailable(): boolean {
  return existsSync(DOCKER) && docker(['info']).code === 0;
}
