import { spawn } from 'node:child_process';

/** A running {@link startSwapper} process. */
export interface Swapper {
  /** Kills it; resolves with the number of swaps it reported. */
  stop(): Promise<number>;
}

// argv: root, JSON [[name, target], ...], deadline (ms since epoch)
const SCRIPT = `
const fs = require('node:fs');
const [root, pairs, deadline] = [process.argv[1], JSON.parse(process.argv[2]), Number(process.argv[3])];
let swaps = 0;
while (Date.now() < deadline) {
  for (const [name, target] of pairs) {
    const p = root + '/' + name;
    try {
      fs.renameSync(p, p + '.real');
      fs.symlinkSync(target, p);
      swaps++;
      fs.unlinkSync(p);
      fs.renameSync(p + '.real', p);
    } catch {}
  }
  if (swaps % 256 === 0) process.stdout.write(swaps + '\\n');
}
`;

/**
 * A racing process for TOCTOU tests: for at most `ms`, swaps each `name` under `root` for
 * a symlink to its `target` and back (rename aside, symlink, unlink, rename back), as
 * fast as it can, so code working on those paths meets the symlink at random moments.
 */
export function startSwapper(root: string, pairs: readonly (readonly [name: string, target: string])[], ms: number): Swapper {
  const child = spawn(process.execPath, ['-e', SCRIPT, root, JSON.stringify(pairs), String(Date.now() + ms)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let swaps = 0;
  child.stdout.on('data', (d: Buffer) => {
    const last = Number(d.toString().trim().split('\n').at(-1));
    if (Number.isFinite(last)) swaps = last;
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    async stop() {
      child.kill('SIGKILL');
      await exited;
      return swaps;
    },
  };
}
