/**
 * Crash-point hooks for crash-consistency tests (H-CRASH): when the environment variable
 * `TSBUILD_CRASH_AT` names a point (`point` or `point@N` for its N-th hit in this process;
 * several separated by commas), the process kills itself with SIGKILL when it reaches it.
 * Without the variable this is one property read.
 */
let parsed: Map<string, number> | undefined;
const hits = new Map<string, number>();

function targets(): Map<string, number> {
  if (parsed === undefined) {
    parsed = new Map();
    for (const part of (process.env.TSBUILD_CRASH_AT ?? '').split(',')) {
      const m = /^\s*([a-z0-9-]+)(?:@(\d+))?\s*$/.exec(part);
      if (m) parsed.set(m[1]!, m[2] === undefined ? 1 : Math.max(1, Number(m[2])));
    }
  }
  return parsed;
}

/** Kills this process with SIGKILL when `TSBUILD_CRASH_AT` names `point` (and its hit count is reached). */
export function crashPoint(point: string): void {
  if (process.env.TSBUILD_CRASH_AT === undefined) return;
  const want = targets().get(point);
  if (want === undefined) return;
  const n = (hits.get(point) ?? 0) + 1;
  hits.set(point, n);
  if (n === want) process.kill(process.pid, 'SIGKILL');
}
