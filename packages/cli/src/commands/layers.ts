import { openStore } from './store.js';
import { humanSize, table } from './table.js';

interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

function clip(s: string, n: number): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
}

/** `tsbuild layers NAME`: dive's report without the UI. */
export async function layersCommand(name: string, opts: { format: 'table' | 'json'; files?: boolean; top: string }, io: Io): Promise<void> {
  const store = await openStore();
  try {
    const { analyzeLayers } = await import('@tsbuild/solver');
    const r = await analyzeLayers(store, name, { files: opts.files === true });
    if (opts.format === 'json') {
      io.stdout(`${JSON.stringify(r, null, 2)}\n`);
      return;
    }
    io.stdout(
      table(
        ['#', 'DIGEST', 'SIZE', 'CONTENT', 'ADDED', 'CHANGED', 'REMOVED', 'INSTRUCTION'],
        r.layers.map((l) => [String(l.index), l.digest.slice(7, 19), humanSize(l.size), humanSize(l.contentSize), String(l.added), String(l.changed), String(l.removed), clip(l.instruction, 70)]),
      ),
    );
    if (opts.files) {
      for (const l of r.layers) {
        io.stdout(`\nlayer ${l.index} ${l.digest.slice(7, 19)}:\n`);
        for (const f of l.files ?? []) io.stdout(`  ${f.kind === 'added' ? 'A' : f.kind === 'changed' ? 'M' : 'D'} ${humanSize(f.size).padStart(8)}  /${f.path}\n`);
      }
    }
    io.stdout(`\nImage efficiency score: ${(r.efficiency * 100).toFixed(1)}%\n`);
    io.stdout(`Total file content:     ${humanSize(r.totalContent)}\n`);
    io.stdout(`Wasted space:           ${humanSize(r.wasted)} (${r.wasted} bytes)\n`);
    const top = Math.max(0, Number(opts.top) || 0);
    if (r.wastedFiles.length > 0 && top > 0) {
      io.stdout('\n');
      io.stdout(table(['COUNT', 'WASTED', 'LAYERS', 'PATH'], r.wastedFiles.slice(0, top).map((w) => [String(w.count), humanSize(w.size), w.layers.join(','), `/${w.path}`])));
    }
  } finally {
    await store.close();
  }
}

/** `tsbuild diff A B`: two images' filesystems, or two layers. */
export async function diffCommand(a: string, b: string, opts: { format: 'table' | 'json' }, io: Io): Promise<void> {
  const store = await openStore();
  try {
    const { diffImages } = await import('@tsbuild/solver');
    const r = await diffImages(store, a, b);
    if (opts.format === 'json') {
      io.stdout(`${JSON.stringify(r, null, 2)}\n`);
      return;
    }
    const size = (n: number | undefined): string => (n === undefined ? '-' : humanSize(n));
    io.stdout(
      table(
        ['KIND', 'TYPE', 'SIZE A', 'SIZE B', 'WHAT', 'PATH'],
        r.changes.map((c) => [c.kind, c.type, size(c.sizeA), size(c.sizeB), c.what?.join(',') ?? '', `/${c.path}`]),
      ),
    );
    io.stdout(`${r.added} added, ${r.changed} changed, ${r.removed} removed (${r.mode === 'image' ? 'image filesystems' : 'layer entries'})\n`);
  } finally {
    await store.close();
  }
}
