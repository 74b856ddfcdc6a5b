/** The runc backend: one `runc run` (foreground, no terminal) per step. */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { markInheritedFdsCloexec } from '@tsbuild/snapshotter';
import { AbortError, ExecutorError } from './errors.js';
import { prepareStep } from './prepare.js';
import { removeStubs } from './stubs.js';
import { CLOSE_INHERITED_FDS, pathExists, runTool, spawnStreaming } from './process.js';
import { buildRuncSpec } from './runc-spec.js';
import type { Executor, RunRequest, RunResult } from './types.js';

/** Host facts the runc backend was created with. */
export interface RuncConfig {
  runc: string;
  /** bash, the launcher that closes inherited fds before exec'ing runc when the native addon is absent. */
  bash: string;
  stateDir: string;
  /** RLIMIT_NOFILE for steps. */
  nofile: number;
}

interface RuncLogLine {
  level?: string;
  msg?: string;
}


async function runcErrors(logFile: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(logFile, 'utf8');
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT') return [];
    throw err;
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let parsed: RuncLogLine;
    try {
      parsed = JSON.parse(line) as RuncLogLine;
    } catch {
      out.push(line);
      continue;
    }
    if (parsed.level === 'error' || parsed.level === 'fatal') out.push(parsed.msg ?? line);
  }
  return out;
}

/** Runs steps with runc, using a private `--root` state dir under `stateDir`. */
export class RuncExecutor implements Executor {
  readonly name = 'runc' as const;
  readonly #cfg: RuncConfig;
  readonly #runcRoot: string;

  constructor(cfg: RuncConfig) {
    this.#cfg = cfg;
    this.#runcRoot = join(cfg.stateDir, 'runc');
  }

  /** The `runc --root` directory (for `runc --root X list` in tests and diagnostics). */
  get runcRoot(): string {
    return this.#runcRoot;
  }

  async run(req: RunRequest): Promise<RunResult> {
    if (req.signal?.aborted === true) throw new AbortError(undefined, { cause: req.signal.reason });
    // the builder's pid in the id lets the next start find containers a crashed builder left
    const id = `tsbuild-${process.pid}-${randomBytes(8).toString('hex')}`;
    const bundle = join(this.#cfg.stateDir, 'bundles', id);
    await mkdir(this.#runcRoot, { recursive: true, mode: 0o700 });
    await mkdir(bundle, { recursive: true, mode: 0o700 });
    const stubs: string[] = [];
    try {
      const prepared = await prepareStep(req, bundle, stubs);
      const spec = buildRuncSpec({
        rootfs: req.rootfs,
        process: req.process,
        network: req.network,
        prepared,
        cgroupsPath: `/tsbuild/${id}`,
        nofile: this.#cfg.nofile,
      });
      await writeFile(join(bundle, 'config.json'), JSON.stringify(spec, null, 2));
      const logFile = join(bundle, 'runc.log');
      const runcArgs = ['--root', this.#runcRoot, '--log', logFile, '--log-format', 'json', 'run', '--bundle', bundle, id];
      const io = { env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }, stdin: req.stdin, onStdout: req.onStdout, onStderr: req.onStderr };
      // inherited fds must not pass through runc into the step: the addon marks them
      // close-on-exec right before the spawn (no launcher process); without it, a bash
      // launcher closes them before exec'ing runc
      const child = markInheritedFdsCloexec()
        ? spawnStreaming(this.#cfg.runc, runcArgs, io)
        : spawnStreaming(this.#cfg.bash, ['--noprofile', '--norc', '-c', `${CLOSE_INHERITED_FDS}; exec "$@"`, 'tsbuild-launch', this.#cfg.runc, ...runcArgs], io);
      let aborted = false;
      let killer: Promise<void> | undefined;
      const onAbort = (): void => {
        aborted = true;
        killer = this.#killUntilGone(id, child.done, () => child.kill('SIGKILL'));
      };
      req.signal?.addEventListener('abort', onAbort, { once: true });
      let code: number;
      try {
        code = await child.done;
      } finally {
        req.signal?.removeEventListener('abort', onAbort);
      }
      if (killer !== undefined) await killer;
      if (aborted) throw new AbortError(undefined, { cause: req.signal?.reason });
      if (code !== 0) {
        const errors = await runcErrors(logFile);
        if (errors.length > 0) {
          const msg = errors.join('; ');
          // runc failing to start the process is the step's fault (bad argv/cwd), anything else is ours.
          const kind = /unable to start container process/.test(msg) ? 'FAILED_PRECONDITION' : 'INTERNAL';
          throw new ExecutorError(kind, `runc failed to run the step: ${msg}`);
        }
      }
      return { exitCode: code, createdStubs: prepared.stubs };
    } finally {
      await this.#cleanup(id, bundle);
      // The container (and its mount namespace) is gone: drop the stubs that are still empty.
      await removeStubs(req.rootfs, stubs);
    }
  }

  /** Sends SIGKILL through runc until the `runc run` process exits (the container may still be starting). */
  async #killUntilGone(id: string, done: Promise<number>, hardKill: () => void): Promise<void> {
    let finished = false;
    void done.then(
      () => { finished = true; },
      () => { finished = true; },
    );
    const deadline = Date.now() + 2000;
    while (!finished && Date.now() < deadline) {
      // Fails while the container is not created yet or already stopped; both are retried/finished below.
      await runTool(this.#cfg.runc, ['--root', this.#runcRoot, 'kill', id, 'KILL']);
      await Promise.race([done.then(() => undefined, () => undefined), sleep(50)]);
    }
    if (!finished) hardKill();
  }

  async #cleanup(id: string, bundle: string): Promise<void> {
    if (await pathExists(join(this.#runcRoot, id))) {
      await runTool(this.#cfg.runc, ['--root', this.#runcRoot, 'delete', '--force', id], { check: true });
    }
    await rm(bundle, { recursive: true, force: true });
  }
}
