import type { CacheUsageRecord, PruneOptions } from '@tsbuild/solver';
import { UsageError } from '../errors.js';
import { openStore } from './store.js';
import { ago, humanSize, table } from './table.js';
import { parseDuration, parseSize } from './units.js';

interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

type Format = 'table' | 'json';

function shortId(key: string): string {
  return key.replace(/^sha256:/, '').slice(0, 12);
}

function clip(s: string, n: number): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
}

function json(io: Io, value: unknown): void {
  io.stdout(`${JSON.stringify(value, null, 2)}\n`);
}

async function withController<T>(fn: (c: import('@tsbuild/solver').CacheController) => Promise<T>): Promise<T> {
  const store = await openStore();
  try {
    const { CacheController } = await import('@tsbuild/solver');
    return await fn(new CacheController(store));
  } finally {
    await store.close();
  }
}

/** `tsbuild cache ls`: every record, like `buildx du --verbose`, as aligned columns. */
export async function cacheLsCommand(opts: { format: Format }, io: Io): Promise<void> {
  await withController(async (c) => {
    const u = await c.usage();
    if (opts.format === 'json') return json(io, u.records);
    const rows = u.records.map((r) => [
      shortId(r.id),
      clip(r.description, 48),
      humanSize(r.size),
      ago(r.created),
      ago(r.lastUsed),
      String(r.usageCount),
      r.shared ? 'shared' : 'private',
      r.inUse ? 'in use' : r.reclaimable ? 'yes' : 'no',
    ]);
    io.stdout(table(['ID', 'DESCRIPTION', 'SIZE', 'CREATED', 'LAST USED', 'USAGE', 'SHARED', 'RECLAIMABLE'], rows));
  });
}

/** `tsbuild cache du`: the largest records and the totals. */
export async function cacheDuCommand(opts: { format: Format; top: string }, io: Io): Promise<void> {
  const top = Number(opts.top);
  if (!Number.isInteger(top) || top < 0) throw new UsageError(`invalid --top ${JSON.stringify(opts.top)}: expected a whole number`);
  await withController(async (c) => {
    const u = await c.usage();
    const largest = [...u.records].sort((a, b) => b.size - a.size).slice(0, top);
    if (opts.format === 'json') {
      const { records: _all, ...totals } = u;
      void _all;
      return json(io, { ...totals, records: u.records.length, largest });
    }
    if (largest.length > 0) {
      io.stdout(table(['ID', 'RECLAIMABLE', 'SIZE', 'LAST ACCESSED', 'DESCRIPTION'], largest.map((r) => [shortId(r.id), r.reclaimable ? 'true' : 'false', humanSize(r.size), ago(r.lastUsed), clip(r.description, 50)])));
      io.stdout('\n');
    }
    io.stdout(
      table(
        ['', ''],
        [
          ['Records:', String(u.records.length)],
          ['Shared:', humanSize(u.shared)],
          ['Private:', humanSize(u.total - u.shared)],
          ['In use:', humanSize(u.inUse)],
          ['Reclaimable:', humanSize(u.reclaimable)],
          ['Total:', humanSize(u.total)],
          ['Unreferenced:', `${humanSize(u.unreferenced.size)} (${u.unreferenced.blobs} blobs, ${u.unreferenced.snapshots} snapshots; freed by any prune)`],
          ['Store:', `${humanSize(u.store.blobBytes)} in ${u.store.blobs} blobs, ${humanSize(u.store.snapshotBytes)} in ${u.store.snapshots} snapshots`],
        ],
      ).replace(/^\s*\n/, ''),
    );
  });
}

/** `tsbuild cache inspect ID`: key components, parent, layer, images using it. */
export async function cacheInspectCommand(id: string, opts: { format: Format }, io: Io): Promise<void> {
  await withController(async (c) => {
    const d = await c.inspect(id);
    if (opts.format === 'json') return json(io, d);
    const lines: [string, string][] = [
      ['ID:', d.id],
      ['Description:', d.description],
      ['Step:', d.step],
      ['Parent:', `${d.components.parent}${d.parentInCache ? ' (a cache record)' : ' (base image or scratch)'}`],
      ['Layer:', d.layer ? `${d.layer.digest} (${humanSize(d.layer.size)}, ${d.layer.mediaType})` : '(none: the step changed no file)'],
      ['Diff ID:', d.layer?.diffId ?? ''],
      ['Snapshot:', d.snapshot ?? '(not unpacked)'],
      ['Size:', humanSize(d.size)],
      ['Created:', new Date(d.created).toISOString()],
      ['Last used:', `${new Date(d.lastUsed).toISOString()} (${ago(d.lastUsed)})`],
      ['Usage count:', String(d.usageCount)],
      ['Shared:', String(d.shared)],
      ['In use:', String(d.inUse)],
      ['Reclaimable:', String(d.reclaimable)],
      ['Images:', d.images.length > 0 ? d.images.join(', ') : '(none)'],
      ['Children:', d.children.length > 0 ? d.children.map(shortId).join(', ') : '(none)'],
    ];
    const w = Math.max(...lines.map(([k]) => k.length));
    for (const [k, v] of lines) io.stdout(`${k.padEnd(w)} ${v}\n`);
    io.stdout('Key components:\n');
    io.stdout(`  op:     ${d.components.op}\n`);
    for (const [k, v] of Object.entries(d.components.args ?? {})) io.stdout(`  ARG     ${k}=${v}\n`);
    if (d.components.files) io.stdout(`  files:  ${d.components.files}\n`);
    for (const [k, v] of Object.entries(d.components.inputs ?? {})) io.stdout(`  input:  ${k} ${v}\n`);
    for (const f of d.files) io.stdout(`  file:   ${f.path} ${f.digest}\n`);
  });
}

/** Parses `--filter` values into prune options (only `until=DURATION` exists for now). */
export function pruneFilters(filters: readonly string[]): Pick<PruneOptions, 'olderThanMs'> {
  const out: Pick<PruneOptions, 'olderThanMs'> = {};
  for (const f of filters) {
    const i = f.indexOf('=');
    const key = i < 0 ? f : f.slice(0, i);
    if (key !== 'until' || i < 0) throw new UsageError(`invalid --filter ${JSON.stringify(f)}: expected until=DURATION (e.g. until=24h)`);
    out.olderThanMs = parseDuration(f.slice(i + 1), '--filter until');
  }
  return out;
}

/** `tsbuild cache prune`: removes records, then blobs and snapshots nothing references. */
export async function cachePruneCommand(opts: { all?: boolean; filter: string[]; keepStorage?: string; dryRun?: boolean; format: Format; force?: boolean }, io: Io): Promise<void> {
  const p: PruneOptions = { ...pruneFilters(opts.filter), all: opts.all === true, dryRun: opts.dryRun === true };
  if (opts.keepStorage !== undefined) p.keepStorage = parseSize(opts.keepStorage, '--keep-storage');
  await withController(async (c) => {
    const r = await c.prune(p);
    if (opts.format === 'json') return json(io, r);
    const verb = r.dryRun ? 'would remove' : 'removed';
    if (r.records.length > 0) {
      io.stdout(table(['ID', 'SIZE', 'LAST USED', 'DESCRIPTION'], r.records.map((x: CacheUsageRecord) => [shortId(x.id), humanSize(x.size), ago(x.lastUsed), clip(x.description, 60)])));
    }
    io.stdout(`${verb} ${r.records.length} records, ${r.blobs.length} blobs, ${r.snapshots.length} snapshots\n`);
    io.stdout(`${r.dryRun ? 'Would reclaim' : 'Total reclaimed'}: ${humanSize(r.reclaimed)}\n`);
  });
}
