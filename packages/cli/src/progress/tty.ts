import type { ProgressEvent } from '@tsbuild/solver';
import { throughput } from './plain.js';

interface Row {
  name: string;
  started?: number;
  completed?: number;
  cached: boolean;
  error?: string;
  reason?: string;
  tail: string[];
  partial: string;
  /** last transfer report (layer export, archive write) */
  status?: string;
}

const TAIL_LINES = 6;

/**
 * The live view on a terminal, like BuildKit's: a header with elapsed time and
 * progress; cached steps collapsed into one line; one line per other step with its
 * elapsed time; under each running step its miss reason and the last lines of its
 * output; transfers with bytes and throughput. Redrawn in place a few times a second;
 * `stop()` draws the last frame and a summary (total time, what was cached).
 */
export class TtyRenderer {
  private readonly write: (s: string) => void;
  private readonly rows = new Map<string, Row>();
  private readonly warnings: string[] = [];
  private readonly start = Date.now();
  private drawnLines = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly columns: () => number;
  private readonly scrub: (s: string) => string;

  constructor(write: (s: string) => void, columns: () => number, scrub: (s: string) => string = (s) => s) {
    this.write = write;
    this.columns = columns;
    this.scrub = scrub;
    this.timer = setInterval(() => this.draw(), 150);
    this.timer.unref();
  }

  handle(e: ProgressEvent): void {
    if (e.type === 'warning') {
      this.warnings.push(this.scrub(e.message));
      return;
    }
    let row = this.rows.get(e.vertex);
    if (!row) {
      row = { name: '', cached: false, tail: [], partial: '' };
      this.rows.set(e.vertex, row);
    }
    if (e.type === 'status') {
      row.status = throughput(e);
      return;
    }
    if (e.type === 'log') {
      const lines = (row.partial + Buffer.from(e.data).toString('utf8')).split('\n');
      row.partial = lines.pop() ?? '';
      row.tail.push(...lines.map((l) => this.scrub(l.replace(/\r/g, ''))));
      if (row.tail.length > TAIL_LINES) row.tail.splice(0, row.tail.length - TAIL_LINES);
      return;
    }
    if (e.name) row.name = e.name;
    if (e.started !== undefined) row.started = e.started;
    if (e.completed !== undefined) row.completed = e.completed;
    if (e.cached) row.cached = true;
    if (e.error !== undefined) row.error = this.scrub(e.error);
    if (e.reason !== undefined) row.reason = e.reason;
  }

  /** The lines of one frame (exposed for tests). */
  render(final: boolean, now = Date.now()): string[] {
    const all = [...this.rows.values()];
    const done = all.filter((r) => r.completed !== undefined).length;
    const width = Math.max(40, this.columns());
    const lines = [`[+] Building ${((now - this.start) / 1000).toFixed(1)}s (${done}/${all.length})${final ? ' FINISHED' : ''}`];
    const cached = all.filter((r) => r.cached && r.error === undefined);
    if (cached.length > 0) lines.push(truncate(`=> CACHED ${cached.length} step${cached.length === 1 ? '' : 's'}: ${cached.map((r) => r.name).join(', ')}`, width));
    for (const r of all) {
      if (r.cached && r.error === undefined) continue;
      const t = r.started !== undefined ? `${(((r.completed ?? now) - r.started) / 1000).toFixed(1)}s` : '';
      const prefix = r.error !== undefined ? '=> ERROR ' : r.completed === undefined ? '=> ' : '=> DONE ';
      const label = `${prefix}${r.name}${r.status ? `  ${r.status}` : ''}`;
      const room = width - t.length - 1;
      lines.push(`${truncate(label, room).padEnd(room)} ${t}`);
      const running = r.completed === undefined;
      if (running && r.reason) lines.push(truncate(` => miss: ${r.reason}`, width));
      if ((running || r.error !== undefined) && r.tail.length > 0) {
        for (const l of r.tail) lines.push(truncate(` > ${l}`, width));
      }
    }
    if (final) for (const w of this.warnings) lines.push(truncate(`WARNING: ${w}`, width));
    return lines;
  }

  private draw(final = false): void {
    const lines = this.render(final);
    let s = '';
    if (this.drawnLines > 0) s += `\x1b[${this.drawnLines}A`;
    for (const l of lines) s += `\x1b[2K${l}\n`;
    // clear what is left of a previous, longer frame
    for (let i = lines.length; i < this.drawnLines; i++) s += '\x1b[2K\n';
    if (this.drawnLines > lines.length) s += `\x1b[${this.drawnLines - lines.length}A`;
    this.drawnLines = lines.length;
    this.write(s);
  }

  /** Draws the last frame, then the summary, and stops redrawing. */
  stop(summary?: string): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.draw(true);
    if (summary !== undefined) {
      const cached = [...this.rows.values()].filter((r) => r.cached && r.error === undefined);
      this.write(`${summary}\n`);
      if (cached.length > 0) this.write(`cached: ${cached.map((r) => r.name).join(', ')}\n`);
    }
  }
}

function truncate(s: string, width: number): string {
  return s.length > width ? `${s.slice(0, Math.max(0, width - 1))}…` : s;
}
