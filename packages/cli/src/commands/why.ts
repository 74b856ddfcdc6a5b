import { resolve } from 'node:path';
import type { BuildStepSummary } from '@tsbuild/solver';
import { openStore } from './store.js';

interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/** One line per step: `CACHED <step>` or `MISS   <step>` with the reason on the next line. */
export function formatSteps(steps: readonly BuildStepSummary[]): string {
  let out = '';
  for (const s of steps) out += `${s.cached ? 'CACHED' : 'MISS  '} ${s.description}${s.cached ? '' : `\n       ${s.reason ?? ''}`}\n`;
  return out;
}

/** `tsbuild why`: every step of the last build with CACHED or the reason it missed. */
export async function whyCommand(dockerfile: string | undefined, opts: { format: 'text' | 'json' }, io: Io): Promise<void> {
  const store = await openStore();
  try {
    // a context directory names its Dockerfile
    let file = dockerfile === undefined ? undefined : resolve(dockerfile);
    if (file !== undefined) {
      const { stat } = await import('node:fs/promises');
      if ((await stat(file).catch(() => undefined))?.isDirectory()) file = resolve(file, 'Dockerfile');
    }
    const summary = store.db.lastBuild(file);
    if (!summary) {
      io.stderr(file === undefined ? 'no build recorded in this store yet\n' : `no build of ${file} recorded in this store\n`);
      process.exitCode = 1;
      return;
    }
    if (opts.format === 'json') {
      io.stdout(`${JSON.stringify(summary, null, 2)}\n`);
      return;
    }
    io.stdout(`build #${summary.id} of ${summary.dockerfile} (${summary.ok ? 'succeeded' : 'failed'})\n`);
    io.stdout(formatSteps(summary.steps));
  } finally {
    await store.close();
  }
}
