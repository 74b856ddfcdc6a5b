import type { ProgressEvent } from '@tsbuild/solver';

interface Row {
  name: string;
  started?: number;
  completed?: number;
  cached: boolean;
  error?: string;
  reason?: string;
  tail: string[];
  partial: string;
}

const TAIL_LINES = 6;

/**
 * The live view on a terminal, like BuildKit's: a header with elapsed time and
 * progress, one line per step with its time, the last lines of output of running
 * steps, cached steps marked CACHED; redrawn in place a few times a second.
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
    if (e.type === 'status') return;
    let row = this.rows.get(e.vertex);
    if (!row) {
      row = { name: '', cached: false, tail: [], partial: '' };
      this.rows.set(e.vertex, row);
    }
    if (e.type === 'log') {
      const lines = (row.partial + Buffer.from(e.data).toString('utf8')).split('\n');
      row.partial = lines.pop() ?? '';
      row.tail.push(...lines.map((l) => this.scrub(l)));
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

  private render(final: boolean): string[] {
    const now = Date.now();
    const all = [...this.rows.values()];
    const done = all.filter((r) => r.completed !== undefined).length;
    const width = Math.max(40, this.columns());
    const lines = [`[+] Building ${((now - this.start) / 1000).toFixed(1)}s (${done}/${all.length})${final ? ' FINISHED' : ''}`];
    for (const r of all) {
      const t = r.started !== undefined ? `${(((r.completed ?? now) - r.started) / 1000).toFixed(1)}s` : '';
      const prefix = r.error !== undefined ? '=> ERROR ' : r.cached ? '=> CACHED ' : '=> ';
      const label = `${prefix}${r.name}`;
      const pad = Math.max(1, width - label.length - t.length - 1);
      lines.push(truncate(`${label}${' '.repeat(pad)}${r.cached ? '' : t}`, width));
      if (!r.cached && r.completed === undefined && r.reason) lines.push(truncate(` => miss: ${r.reason}`, width));
      if ((r.completed === undefined || r.error !== undefined) && r.tail.length > 0) {
        for (const l of r.tail) lines.push(truncate(` > ${l}`, width));
      }
    }
    if (final) for (const w of this.warnings) lines.push(`WARNING: ${w}`);
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

  /** Draws the last frame and stops redrawing. */
  stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.draw(true);
  }
}

function truncate(s: string, width: number): string {
  return s.length > width ? `${s.slice(0, width - 1)}…` : s;
}
