import { execFileSync } from 'node:child_process';

/**
 * Prerequisites of the privileged tests: root (mount, mknod, chown) and the tools we
 * spawn. As root or under CI a missing prerequisite throws (naming the Debian package);
 * only a non-root developer run gets a skip reason.
 */
export function privilegedSkip(tools: Record<string, string> = { getfattr: 'attr', setfattr: 'attr', mount: 'mount', mknod: 'coreutils' }): string | false {
  const missing: string[] = [];
  for (const [tool, pkg] of Object.entries(tools)) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      missing.push(`${tool} (Debian package "${pkg}")`);
    }
  }
  const root = process.getuid?.() === 0;
  if (missing.length > 0 && (root || process.env['CI'] === 'true')) throw new Error(`missing prerequisites: ${missing.join(', ')}`);
  if (!root) {
    if (process.env['CI'] === 'true') throw new Error('privileged snapshotter tests need root under CI');
    return 'needs root (mount, mknod, chown)';
  }
  if (missing.length > 0) return `missing ${missing.join(', ')}`;
  return false;
}
