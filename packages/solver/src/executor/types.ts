/** Public types of the executor: what a RUN step needs to run in a sandbox. */

/**
 * Network of a step.
 * - `'default'`: the host's network namespace is shared (like BuildKit's host networking),
 *   because no CNI/bridge network is set up by tsbuild.
 * - `'host'`: the host's network namespace, explicitly (`RUN --network=host`).
 * - `'none'`: a new network namespace with only the loopback interface, brought up.
 */
export type NetworkMode = 'default' | 'none' | 'host';

/** A bind mount of an already-resolved host path into the step. */
export interface BindMount {
  type: 'bind';
  /** Host path (file or directory), already resolved by the solver. */
  source: string;
  /** Path inside the rootfs; resolved with {@link resolveInRoot} semantics. */
  target: string;
  readonly: boolean;
}

/** A private tmpfs for the step (discarded afterwards). */
export interface TmpfsMount {
  type: 'tmpfs';
  target: string;
  /** Size limit in bytes (kernel default: half of RAM). */
  size?: number;
}

/** A mount the solver asks for (`RUN --mount=...`), with host paths already resolved. */
export type ExecMount = BindMount | TmpfsMount;

/** The process to run. */
export interface ProcessSpec {
  /** argv; args[0] is looked up in the step's PATH when it has no slash. */
  args: string[];
  /** `KEY=value` entries, passed exactly (nothing is added). */
  env: string[];
  /** Absolute working directory inside the rootfs; created if missing. */
  cwd: string;
  user: { uid: number; gid: number; additionalGids?: number[] };
  /** Hostname inside the step's UTS namespace (default `buildkitsandbox`, as BuildKit). */
  hostname?: string;
}

/** One RUN step. */
export interface RunRequest {
  /** Already-mounted root filesystem directory (absolute host path); becomes the step's `/`. */
  rootfs: string;
  mounts: readonly ExecMount[];
  process: ProcessSpec;
  network: NetworkMode;
  /** Bytes written to the step's stdin, then closed; without it stdin is /dev/null. */
  stdin?: Uint8Array;
  onStdout?: (chunk: Uint8Array) => void;
  onStderr?: (chunk: Uint8Array) => void;
  /** Aborting kills the sandbox, removes it, and rejects with an `AbortError`. */
  signal?: AbortSignal;
}

/** Outcome of a step that ran. */
export interface RunResult {
  /** The process's exit code, or 128+signal when it was killed by a signal. */
  exitCode: number;
  /**
   * Paths (relative to rootfs, no leading slash, parents before children) that the executor
   * created only to serve as mount points. They are empty unless the step wrote under them
   * after unmounting; the differ drops them from the layer.
   */
  createdStubs: string[];
}

/** Runs one step in a sandbox. A non-zero exit is a result; infrastructure failures throw `ExecutorError`. */
export interface Executor {
  readonly name: 'runc' | 'unshare';
  run(req: RunRequest): Promise<RunResult>;
}

/** Options of `createExecutor`. */
export interface ExecutorOptions {
  /** `'auto'` (default): runc if installed and safe, else unshare. */
  isolation?: 'auto' | 'runc' | 'unshare';
  /** Private directory under the tsbuild root for runtime state and bundles. */
  stateDir: string;
}
