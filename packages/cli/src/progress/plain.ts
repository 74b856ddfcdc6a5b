import type { ProgressEvent } from '@tsbuild/solver';
import { humanSize } from '../format.js';

interface VertexState {
  n: number;
  name: string;
  started?: number;
  printedHeader: boolean;
}

/**
 * BuildKit's `--progress=plain` format: `#N name`, the step's output lines
 * prefixed with `#N <seconds>`, then `#N CACHED` or `#N DONE 0.3s` (or `ERROR`).
 * A cache miss prints its reason on one line: `#N MISS <reason>`.
 */
export class PlainRenderer {
  private readonly out: (s: string) => void;
  private readonly vertices = new Map<string, VertexState>();
  private seq = 0;
  private readonly partial = new Map<string, string>();
  private readonly scrub: (s: string) => string;

  constructor(out: (s: string) => void, scrub: (s: string) => string = (s) => s) {
    this.out = out;
    this.scrub = scrub;
  }

  private state(id: string, name: string): VertexState {
    let v = this.vertices.get(id);
    if (!v) {
      v = { n: ++this.seq, name, printedHeader: false };
      this.vertices.set(id, v);
    }
    if (name && !v.name) v.name = name;
    return v;
  }

  private header(v: VertexState): void {
    if (v.printedHeader) return;
    v.printedHeader = true;
    this.out(`\n#${v.n} ${v.name}\n`);
  }

  handle(e: ProgressEvent): void {
    switch (e.type) {
      case 'vertex': {
        const v = this.state(e.vertex, e.name);
        if (e.started !== undefined) v.started = e.started;
        this.header(v);
        if (e.reason !== undefined) this.out(`#${v.n} MISS ${e.reason}\n`);
        if (e.isolation !== undefined) this.out(`#${v.n} isolation: ${e.isolation}\n`);
        if (e.completed !== undefined) {
          this.flushPartial(e.vertex, v);
          if (e.error !== undefined) this.out(`#${v.n} ERROR: ${this.scrub(e.error)}\n`);
          else if (e.cached) this.out(`#${v.n} CACHED\n`);
          else this.out(`#${v.n} DONE ${(((e.completed - (v.started ?? e.completed)) / 1000)).toFixed(1)}s\n`);
        }
        return;
      }
      case 'log': {
        const v = this.state(e.vertex, '');
        this.header(v);
        const text = (this.partial.get(e.vertex) ?? '') + Buffer.from(e.data).toString('utf8');
        const lines = text.split('\n');
        this.partial.set(e.vertex, lines.pop() ?? '');
        const t = (((Date.now() - (v.started ?? Date.now())) / 1000)).toFixed(3);
        for (const l of lines) this.out(`#${v.n} ${t} ${this.scrub(l)}\n`);
        return;
      }
      case 'status': {
        const v = this.state(e.vertex, '');
        this.header(v);
        this.out(`#${v.n} ${e.id} ${throughput(e)}\n`);
        return;
      }
      case 'warning': {
        const where = e.location ? ` (${e.location.file}:${e.location.line})` : '';
        this.out(`WARNING: ${this.scrub(e.message)}${where}\n`);
        return;
      }
    }
  }

  private flushPartial(id: string, v: VertexState): void {
    const rest = this.partial.get(id);
    if (rest) {
      const t = (((Date.now() - (v.started ?? Date.now())) / 1000)).toFixed(3);
      this.out(`#${v.n} ${t} ${this.scrub(rest)}\n`);
      this.partial.delete(id);
    }
  }
}

/** `12.3MB / 40.0MB` or, for a finished transfer, `40.0MB in 2.1s (19.0MB/s)`. */
export function throughput(e: { current: number; total?: number; started?: number; completed?: number }): string {
  if (e.started !== undefined && e.completed !== undefined) {
    const secs = Math.max(0.001, (e.completed - e.started) / 1000);
    return `${humanSize(e.current)} in ${secs.toFixed(1)}s (${humanSize(Math.round(e.current / secs))}/s)`;
  }
  return `${humanSize(e.current)}${e.total !== undefined ? ` / ${humanSize(e.total)}` : ''}`;
}
