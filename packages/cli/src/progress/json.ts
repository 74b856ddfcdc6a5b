import type { ProgressEvent } from '@tsbuild/solver';

/** `--progress=json`: one JSON object per event and line; log data as UTF-8 text. */
export class JsonRenderer {
  private readonly out: (s: string) => void;
  private readonly scrub: (s: string) => string;

  constructor(out: (s: string) => void, scrub: (s: string) => string = (s) => s) {
    this.out = out;
    this.scrub = scrub;
  }

  handle(e: ProgressEvent): void {
    const line = e.type === 'log' ? { ...e, data: this.scrub(Buffer.from(e.data).toString('utf8')) } : e;
    this.out(`${this.scrub(JSON.stringify(line))}\n`);
  }
}
