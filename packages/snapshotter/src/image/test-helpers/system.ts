// Test-only helpers for host prerequisites (docker, skopeo, umoci).
import { spawnSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';

export const DOCKER = '/usr/bin/docker';
export const DOCKER_ENV = { ...process.env, DOCKER_HOST: 'unix:///var/run/docker.sock' };

const strict = process.env.CI === 'true' || process.getuid?.() === 0;

/**
 * True when `path` exists. Otherwise: under CI or as root the test fails naming the
 * Debian package; a non-root developer run skips with a printed reason.
 */
export function requireTool(t: TestContext, path: string, debianPackage: string): boolean {
  if (existsSync(path)) return true;
  const reason = `${path} not found: install the Debian package "${debianPackage}"`;
  if (strict) throw new Error(reason);
  t.skip(reason);
  return false;
}

export function run(argv: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: opts.env ?? process.env, input: opts.input, maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function dockerUp(): boolean {
  return run([DOCKER, 'info'], { env: DOCKER_ENV }).code === 0;
}

/**
 * Makes sure Debian's dockerd answers on its default socket, starting it
 * (detached, like scripts/start-services.sh) when we are root and it is not running.
 */
export async function ensureDocker(t: TestContext): Promise<boolean> {
  if (!requireTool(t, DOCKER, 'docker.io') || !requireTool(t, '/usr/sbin/dockerd', 'docker.io')) return false;
  if (dockerUp()) return true;
  if (process.getuid?.() !== 0) {
    const reason = 'dockerd is not running and we are not root to start it (run scripts/start-services.sh)';
    if (strict) throw new Error(reason);
    t.skip(reason);
    return false;
  }
  const child = spawn('setsid', ['/usr/sbin/dockerd', '--iptables=false', '--ip6tables=false', '--bridge=none', '-H', 'unix:///var/run/docker.sock'], { detached: true, stdio: 'ignore' });
  child.unref();
  for (let i = 0; i < 120; i++) {
    if (dockerUp()) return true;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error('dockerd did not become ready within 60 s (package docker.io)');
}
