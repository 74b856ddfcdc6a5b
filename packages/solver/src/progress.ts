/**
 * The build's progress as one stream of events (after BuildKit's SolveStatus).
 * The library never prints: renderers (tty, plain, json) live in the CLI.
 */
export type ProgressEvent =
  | VertexEvent
  | { type: 'log'; vertex: string; stream: 1 | 2; data: Uint8Array }
  /** bytes of a transfer (layer export, archive write); `started`/`completed` give its throughput */
  | { type: 'status'; vertex: string; id: string; current: number; total?: number; started?: number; completed?: number }
  | { type: 'warning'; message: string; location?: { file: string; line: number; column?: number } };

/** A vertex (one step) changed state. Later events for the same vertex carry the newer fields. */
export interface VertexEvent {
  type: 'vertex';
  /** stable id within the build */
  vertex: string;
  /** e.g. `[build 2/5] RUN make` */
  name: string;
  started?: number;
  completed?: number;
  cached?: boolean;
  /** why the step missed the cache (absent on hits and for steps that are never cached) */
  reason?: string;
  error?: string;
  /** which sandbox ran a RUN step */
  isolation?: string;
}

export type ProgressHandler = (event: ProgressEvent) => void;
