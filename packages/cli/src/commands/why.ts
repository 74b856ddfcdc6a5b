import { resolve } from 'node:path';
import { openStore } from './store.js';

interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/** `tsbuild why`: every step of the last build with CACHED or the reason it missed. */
export async function whyCommand(dockerfile: string | undefined, opts: { format: 'text' | 'json' }, io: Io): Promise<void> {
  const store = await openStore();
  try {
    const summary = store.db.lastBuild(dockerfile === undefined ? undefined : resolve(dockerfile));
    if (!summary) {
      io.stderr(dockerfile === undefined ? 'no build recorded in this store yet\n' : `no build of ${resolve(dockerfile)} recorded in this store\n`);
      process.exitCode = 1;
      return;
    }
    if (opts.format === 'json') {
      io.stdout(`${JSON.stringify(summary, null, 2)}\n`);
      return;
    }
    io.stdout(`build #${summary.id} of ${summary.dockerfile} (${summary.ok ? 'succeeded' : 'failed'})\n`);
    for (const s of summary.steps) {
      io.stdout(`${s.cached ? 'CACHED' : 'MISS  '} ${s.description}${s.cached ? '' : `\n       ${s.reason ?? ''}`}\n`);
    }
  } finally {
    await store.close();
  }
}
