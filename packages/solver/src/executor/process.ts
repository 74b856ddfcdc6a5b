/** Small helpers to run host tools (runc, ip...) and collect their output. */
import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { constants } from 'node:os';
import { ExecutorError } from './errors.js';

/** Exit status and captured output of a host tool. */
export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a host tool to completion with stdin ignored and stdout/stderr captured. Throws an
 * ExecutorError when it cannot be started, or when `check` is set and it exits non-zero.
 */
export function runTool(cmd: string, args: readonly string[], opts?: { check?: boolean }): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (c: Buffer) => out.push(c));
    child.stderr?.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => reject(new ExecutorError('INTERNAL', `cannot start ${cmd}: ${e.message}`, { cause: e })));
    child.on('close', (code, signal) => {
      const r = { code: code ?? 128 + signalNumber(signal), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
      if (opts?.check === true && r.code !== 0) {
        reject(new ExecutorError('INTERNAL', `${cmd} ${args.join(' ')} failed: expected exit code 0, found ${r.code}: ${r.stderr.trim()}`));
      } else resolve(r);
    });
  });
}

/** Linux number of a signal name (0 when there was no signal). */
export function signalNumber(signal: NodeJS.Signals | null): number {
  return signal === null ? 0 : constants.signals[signal];
}

/** A running sandbox process whose stdio is wired to a step's callbacks. */
export interface StreamingChild {
  pid: number;
  /** Resolves with the exit code (128+signal when killed) once stdout and stderr are drained. */
  done: Promise<number>;
  kill(signal: NodeJS.Signals): void;
}

/**
 * Spawns a sandbox launcher with exactly three stdio fds: stdin is a pipe fed with `stdin`
 * (or /dev/null), stdout and stderr are separate pipes forwarded chunk by chunk. Node opens
 * every other fd with O_CLOEXEC, so nothing else is passed on.
 */
export function spawnStreaming(
  cmd: string,
  args: readonly string[],
  opts: { env: Record<string, string>; stdin: Uint8Array | undefined; onStdout: ((c: Uint8Array) => void) | undefined; onStderr: ((c: Uint8Array) => void) | undefined },
): StreamingChild {
  const child = spawn(cmd, args, {
    stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    env: opts.env,
    cwd: '/',
  });
  child.stdout?.on('data', (c: Buffer) => opts.onStdout?.(new Uint8Array(c.buffer, c.byteOffset, c.byteLength)));
  child.stderr?.on('data', (c: Buffer) => opts.onStderr?.(new Uint8Array(c.buffer, c.byteOffset, c.byteLength)));
  if (opts.stdin !== undefined && child.stdin !== null) {
    const stdin = child.stdin;
    // The step may exit without reading its input: EPIPE is then expected, not a failure.
    stdin.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') child.emit('error', e);
    });
    stdin.end(Buffer.from(opts.stdin.buffer, opts.stdin.byteOffset, opts.stdin.byteLength));
  }
  const done = new Promise<number>((resolve, reject) => {
    child.on('error', (e) => reject(new ExecutorError('INTERNAL', `cannot run ${cmd}: ${e.message}`, { cause: e })));
    child.on('close', (code, signal) => resolve(code ?? 128 + signalNumber(signal)));
  });
  if (child.pid === undefined) {
    // spawn failed synchronously; 'error' will reject `done`.
    return { pid: -1, done, kill: () => undefined };
  }
  return { pid: child.pid, done, kill: (s) => child.kill(s) };
}

/**
 * bash snippet that closes every fd above 2 of the shell. Node opens its own fds with
 * O_CLOEXEC, but fds the builder inherited from its parent without it would otherwise pass
 * through `runc run` (Go keeps them across exec) or unshare into the step.
 */
export const CLOSE_INHERITED_FDS = 'for f in /proc/self/fd/*; do n=${f##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done';

/** Whether a path exists (ENOENT is false; any other error is thrown). */
export async function pathExists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT') return false;
    throw err;
  }
}
