import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { chmod, chown, cp, lstat, mkdir, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { join, posix, resolve as resolvePath } from 'node:path';
import {
  buildStageGraph,
  expandInstruction,
  parseDockerfile,
  toStages,
  type Instruction,
  type Stage,
  type StagesResult,
} from '@tsbuild/parser';
import {
  chainId,
  loadArchive,
  crashPoint,
  DEFAULT_MOUNT_STUBS,
  DigestMismatchError,
  diffTarStream,
  exportLayer,
  mountAll,
  SnapshotNotFoundError,
  snapshotDiffRecipe,
  writeLayer,
  unmountAll,
  UnsupportedFileNameError,
  unpackImage,
  writeImage,
  type Compression,
  type Digest,
  type ImageConfigFile,
  type LayerReuse,
  type LayerRef,
  type StoredImage,
} from '@tsbuild/snapshotter';
import pLimit from 'p-limit';
import type { BuildStepSummary, FileDigest, KeyComponents } from '../cache/cache-db.js';
import { Lease } from '../cache/lease.js';
import { canonicalJson, keyOf, sha256Key, type Key } from '../cache/keys.js';
import { BuildContext, cleanRel, hardlinkAnchors, type ContextEntry, type SourceMatch } from '../context/build-context.js';
import { IgnoreMatcher, parseDockerignore } from '../context/dockerignore.js';
import { BuildCanceledError, BuildError, ExecFailedError, type StepLocation } from '../errors.js';
import { createExecutor, resolveInRoot, resolveUser, type ExecMount, type Executor, type NetworkMode } from '../executor/index.js';
import { containerPathOf, copyInto, modeOf, parseChmod } from '../ops/copy.js';
import { relinkUnchanged, type RelinkCandidate } from '../ops/relink.js';
import { fetchGit, fetchHttp, isHttpSource, parseGitRef, writeHeredocs } from '../ops/sources.js';
import type { ProgressHandler } from '../progress.js';
import type { BuildStore } from '../store.js';
import { explainMiss } from './explain.js';
import { currentBootId, ensureVolatileStamp, markDurable, pumpWriteback, syncFilesystem, VOLATILE_LABEL } from './volatile.js';
import { RemoteSession } from '../remote/session.js';
import type { CacheExportResult, CacheExportSpec } from '../remote/cache-export.js';
import type { CacheImportSpec } from '../remote/cache-import.js';
import type { RegistryAccess } from '../remote/registry.js';
import { addHistory, cloneConfig, fillHistoryTimes, newestTime, DEFAULT_PATH, emptyConfig, envToMap, goQuoteSlice, goSlice, healthcheckHistory, setEnv } from './image-config.js';

/** A secret made available to `RUN --mount=type=secret`. Its value never enters a key, a layer or a log. */
export interface SecretSource {
  id: string;
  /** a file to read the secret from */
  src?: string;
  /** an environment variable of the builder holding the secret */
  env?: string;
}

/** An SSH agent forwarded to `RUN --mount=type=ssh,id=ID`. */
export interface SshSource {
  id: string;
  /** agent socket paths (the first is used) */
  paths: readonly string[];
}

/**
 * Default {@link BuildOptions.virtualLayerMinBytes}: 64 MiB. Below it the blob write is
 * cheap (≤ ~0.1 s) next to a syncfs of the whole filesystem, and other code (the COPY
 * relink of a rebuild) reads small previous layers from their blobs.
 */
export const VIRTUAL_LAYER_MIN_BYTES = 64 * 1024 * 1024;

export interface BuildOptions {
  /** the build context directory */
  context: string;
  /** path of the Dockerfile (default `<context>/Dockerfile`) */
  dockerfile?: string;
  /** the Dockerfile's text, when it does not come from a file (e.g. stdin); `dockerfile` then only names it */
  dockerfileText?: string;
  /** names to tag the result with */
  tags?: readonly string[];
  target?: string;
  buildArgs?: Readonly<Record<string, string>>;
  labels?: Readonly<Record<string, string>>;
  /** ignore the cache for every step */
  noCache?: boolean;
  /** ignore the cache for these stages only */
  noCacheFilter?: readonly string[];
  isolation?: 'auto' | 'runc' | 'unshare';
  network?: NetworkMode;
  /**
   * how layers are stored (default 'uncompressed', as dockerd's store keeps them: a
   * commit then costs one tar + sha256 pass, and `save` writes what `docker save`
   * writes); 'gzip' or 'zstd' compress at commit, for images meant for a registry
   */
  compression?: Compression;
  compressionLevel?: number;
  /** clamp timestamps (layer mtimes, created) to this Unix time, for reproducible images */
  sourceDateEpoch?: number;
  secrets?: readonly SecretSource[];
  /**
   * SSH agents for `RUN --mount=type=ssh` (`--ssh default=$SSH_AUTH_SOCK`): each id maps to
   * agent sockets (the first one is forwarded) or key files (not supported).
   */
  ssh?: readonly SshSource[];
  /**
   * Named build contexts (`--build-context name=value`): a directory, `oci-layout://DIR[:TAG]`
   * or `docker-image://NAME` (from the local store). `FROM name`, `COPY --from=name` and
   * `--mount from=name` use them before stages of the same name... as BuildKit does.
   */
  buildContexts?: Readonly<Record<string, string>>;
  /** `--pull`: resolve every image named by FROM, `COPY --from` or `--mount from=` at its registry again */
  pull?: boolean;
  /** registries spoken to over plain HTTP (localhost always is; also `$TSBUILD_INSECURE_REGISTRIES`), docker's config dir */
  registry?: RegistryAccess;
  /** `--cache-from`: caches whose records a step that misses locally reuses (layers fetched only when needed) */
  cacheFrom?: readonly CacheImportSpec[];
  /** `--cache-to`: where to export this build's cache records after it succeeds */
  cacheTo?: readonly CacheExportSpec[];
  /**
   * uncompressed layers whose tar is at least this big are stored as virtual blobs,
   * regenerated from their snapshot when read (default {@link VIRTUAL_LAYER_MIN_BYTES});
   * `Infinity` always writes the blob
   */
  virtualLayerMinBytes?: number;
  /** how many RUN steps run at once (default: 4 × cores, at least 16: steps mostly wait on processes, and BuildKit sets no limit) */
  jobs?: number;
  signal?: AbortSignal;
  onProgress?: ProgressHandler;
}

export interface BuildResult {
  image: StoredImage;
  /** manifest digest */
  digest: Digest;
  tags: string[];
  steps: BuildStepSummary[];
  /** the stage that was built */
  target: string;
  /** what each `cacheTo` export wrote */
  cacheExports?: CacheExportResult[];
}

interface StageState {
  /** display name: the stage name, or `stage-N` */
  name: string;
  layers: LayerRef[];
  config: ImageConfigFile;
  /** the key of the filesystem state (chain of file-changing steps) */
  fsKey: Key;
  /** ARGs in scope, with their values (a stage built on another stage inherits them, as BuildKit's LLB env does) */
  args: Map<string, string>;
  /** the ARG instructions of this stage, in order (BuildKit prints them before RUN commands in the history) */
  argDecls: string[];
  /** the ARG names the steps of this stage have read so far */
  shell: string[];
  /** how the stage's base was named, for history and explanations */
  base: string;
}

const PROXY_ARGS = new Set([
  'HTTP_PROXY',
  'http_proxy',
  'HTTPS_PROXY',
  'https_proxy',
  'FTP_PROXY',
  'ftp_proxy',
  'NO_PROXY',
  'no_proxy',
  'ALL_PROXY',
  'all_proxy',
]);

const DEFAULT_SHELL = ['/bin/sh', '-c'];

/** Mount points runc creates for every RUN; BuildKit's layers keep them. */
const RUNTIME_DIRS = ['dev', 'proc', 'sys'];

/** Runs one Dockerfile build against a store. */
export async function build(store: BuildStore, opts: BuildOptions): Promise<BuildResult> {
  const b = new Builder(store, opts);
  return b.run();
}

class Builder {
  private readonly store: BuildStore;
  private readonly opts: BuildOptions;
  private readonly emit: ProgressHandler;
  private readonly abort = new AbortController();
  private readonly steps: BuildStepSummary[] = [];
  private readonly missed = new Set<string>();
  /** the last record whose per-file digests were read (a miss explains itself, then a COPY relinks from them) */
  private lastFiles: { key: string; files: readonly FileDigest[] } | undefined;
  private readonly usedArgs = new Set<string>();
  private readonly stageResults = new Map<number, Promise<StageState>>();
  private readonly limit: ReturnType<typeof pLimit>;
  private dockerfilePath = '';
  private stages: StagesResult | undefined;
  private context: BuildContext | undefined;
  private executor: Promise<Executor> | undefined;
  private vertexSeq = 0;
  private readonly namedContexts = new Map<string, Promise<BuildContext>>();
  private readonly now = Date.now();
  /** holds what this build uses so `cache prune` leaves it alone */
  private lease: Lease | undefined;
  /** registry pulls, imported and exported caches */
  private remote: RemoteSession | undefined;

  constructor(store: BuildStore, opts: BuildOptions) {
    this.store = store;
    this.opts = opts;
    this.emit = opts.onProgress ?? (() => {});
    this.limit = pLimit(Math.max(1, opts.jobs ?? Math.max(16, 4 * availableParallelism())));
    if (opts.signal) {
      if (opts.signal.aborted) this.abort.abort(opts.signal.reason);
      opts.signal.addEventListener('abort', () => this.abort.abort(opts.signal!.reason), { once: true });
    }
  }

  async run(): Promise<BuildResult> {
    const contextDir = resolvePath(this.opts.context);
    this.dockerfilePath = this.opts.dockerfile ? resolvePath(this.opts.dockerfile) : join(contextDir, 'Dockerfile');
    const text =
      this.opts.dockerfileText ??
      (await readFile(this.dockerfilePath, 'utf8').catch((err: unknown) => {
        throw new BuildError(`failed to read dockerfile: open ${this.dockerfilePath}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`, 'NOT_FOUND');
      }));
    const parsed = parseDockerfile(text, { file: this.dockerfilePath });
    for (const w of parsed.warnings) this.emit({ type: 'warning', message: `${w.rule}: ${w.message}`, location: { file: this.dockerfilePath, line: w.range.start.line, column: w.range.start.col } });
    this.stages = toStages(parsed.ast, { buildArgs: { ...(this.opts.buildArgs ?? {}) }, file: this.dockerfilePath });
    const graph = buildStageGraph(this.stages, this.opts.target === undefined ? undefined : { target: this.opts.target });
    this.context = await BuildContext.open(contextDir, this.store.db, this.opts.dockerfile ? { dockerfile: this.dockerfilePath } : {});
    await this.store.cleanupTemp();

    const buildId = this.store.db.startBuild(this.dockerfilePath, this.now);
    this.lease = Lease.acquire(this.store.db);
    let ok = false;
    try {
      this.remote = await RemoteSession.open(this.store, this.opts, this.emit, this.abort.signal);
      for (const idx of graph.order) this.stageResult(idx);
      let final: StageState;
      try {
        final = await this.stageResult(graph.target);
        await Promise.all(graph.order.map((i) => this.stageResult(i)));
      } catch (err) {
        this.abort.abort(err);
        await Promise.allSettled([...this.stageResults.values()]);
        throw this.firstError !== undefined ? this.firstError.err : err;
      }
      this.warnUnusedArgs();
      const image = await this.finish(final);
      await this.remote.finish(this.steps, final.fsKey);
      ok = true;
      const stage = this.stages.stages[graph.target];
      return { image, digest: image.manifestDigest, tags: [...(this.opts.tags ?? [])], steps: this.steps, target: stage.name ?? String(stage.index), ...(this.remote.exports.length > 0 ? { cacheExports: this.remote.exports } : {}) };
    } finally {
      this.store.db.finishBuild(buildId, ok, this.steps, Date.now());
      this.lease.release();
    }
  }

  private firstError: { err: unknown } | undefined;

  private stageResult(idx: number): Promise<StageState> {
    let p = this.stageResults.get(idx);
    if (!p) {
      p = this.runStage(this.stages!.stages[idx]);
      // the first stage to fail cancels every other (their sandboxes are killed) and its
      // error is the one the build reports, not the cancellations it caused
      p.catch((err: unknown) => {
        if (this.firstError === undefined) this.firstError = { err };
        this.abort.abort(err);
      });
      this.stageResults.set(idx, p);
    }
    return p;
  }

  private location(range: { start: { line: number; col: number } }): StepLocation {
    return { file: this.dockerfilePath, line: range.start.line, column: range.start.col };
  }

  private checkAbort(): void {
    if (this.abort.signal.aborted) throw new BuildCanceledError();
  }

  private stageIndexByName(ref: string): number | undefined {
    const lower = ref.toLowerCase();
    for (const s of this.stages!.stages) if (s.name === lower) return s.index;
    if (/^\d+$/.test(ref)) {
      const n = Number(ref);
      if (n < this.stages!.stages.length) return n;
    }
    return undefined;
  }

  /** Counts the steps of a stage that show as vertices, as BuildKit numbers them. */
  private vertexCount(stage: Stage): number {
    return 1 + stage.instructions.filter((i) => i.kind === 'RUN' || i.kind === 'COPY' || i.kind === 'ADD' || i.kind === 'WORKDIR').length;
  }

  // ---------------------------------------------------------------------------
  // stages

  private async runStage(stage: Stage): Promise<StageState> {
    const name = stage.name ?? `stage-${stage.index}`;
    const total = this.vertexCount(stage);
    let n = 1;
    const state = await this.fromStep(stage, name, total);
    const noCache = this.opts.noCache === true || (this.opts.noCacheFilter ?? []).some((f) => f.toLowerCase() === name || f === String(stage.index));
    for (let i = 0; i < stage.instructions.length; i++) {
      this.checkAbort();
      const raw = stage.instructions[i];
      const env = this.expansionEnv(state);
      let instr: Instruction;
      try {
        instr = raw.kind === 'ONBUILD' ? raw : expandInstruction(raw, env, { escape: this.stages!.escape });
      } catch (err) {
        throw this.withLocation(err, raw.range);
      }
      const isVertex = instr.kind === 'RUN' || instr.kind === 'COPY' || instr.kind === 'ADD' || instr.kind === 'WORKDIR';
      if (isVertex) n++;
      const label = `[${name} ${n}/${total}] ${displayInstruction(raw)}`;
      try {
        await this.dispatch(stage, state, instr, raw, { label, stepRef: `${this.dockerfilePath}#${stage.index}#${i}`, noCache });
      } catch (err) {
        throw this.withLocation(err, raw.range);
      }
    }
    return state;
  }

  private withLocation(err: unknown, range: { start: { line: number; col: number } }): unknown {
    // a step met a name it cannot keep (in its result, or in a layer it applied): said
    // without the host path of the walk, at the instruction's line
    if (err instanceof UnsupportedFileNameError) err = new BuildError(err.detail, 'FAILED_PRECONDITION', { cause: err });
    if (err instanceof BuildError && !err.location) err.location = this.location(range);
    return err;
  }

  private async fromStep(stage: Stage, name: string, total: number): Promise<StageState> {
    const base = stage.base;
    const platformArgs = this.platformArgs();
    const mk = (config: ImageConfigFile, layers: LayerRef[], fsKey: Key): StageState => {
      if (!envToMap(config.config.Env).has('PATH')) setEnv(config, 'PATH', DEFAULT_PATH);
      return { name, layers, config, fsKey, args: new Map(), argDecls: [], shell: config.config.Shell ? [...config.config.Shell] : [...DEFAULT_SHELL], base };
    };
    void platformArgs;
    if (base === 'scratch') {
      const config = emptyConfig();
      // BuildKit's empty image has WorkingDir "/" (and the default PATH)
      config.config.WorkingDir = '/';
      return mk(config, [], keyOf({ from: 'scratch' }));
    }
    const bc = this.opts.buildContexts?.[base];
    if (bc !== undefined && !/^(docker-image|oci-layout):\/\//.test(bc)) {
      // FROM a directory build context: the stage's root filesystem is the directory's files
      // (BuildKit's local source), on an empty config
      const config = emptyConfig();
      config.config.WorkingDir = '/';
      const state = mk(config, [], keyOf({ from: 'scratch' }));
      const copy: Extract<Instruction, { kind: 'COPY' | 'ADD' }> = {
        kind: 'COPY',
        range: stage.from.range,
        raw: stage.from.raw,
        sources: ['.'],
        dest: '/',
        heredocs: [],
        from: base,
        link: false,
        parents: false,
        exclude: [],
        keepGitDir: false,
      };
      await this.copyStep(state, copy, { label: `[${name} 1/${total}] FROM ${base} (build context ${bc})`, stepRef: `${this.dockerfilePath}#${stage.index}#from`, noCache: this.opts.noCache === true });
      return state;
    }
    const depIdx = bc !== undefined ? undefined : this.stageIndexByName(base);
    if (depIdx !== undefined && depIdx < stage.index) {
      const dep = await this.stageResult(depIdx);
      const state = mk(cloneConfig(dep.config), [...dep.layers], dep.fsKey);
      state.args = new Map(dep.args);
      state.shell = [...dep.shell];
      await this.runTriggers(stage, state);
      return state;
    }
    const vertex = this.newVertex(`[${name} 1/${total}] FROM ${base}`);
    const image = await this.lookupImage(base, vertex).catch((err: unknown) => {
      if (err instanceof BuildError) {
        err.location ??= this.location(stage.from.range);
        this.vertexDone(vertex, { error: err.message });
      }
      throw err;
    });
    if (!image) {
      const err = new BuildError(`${base}: not found: no such image in the local store (load it with \`tsbuild load -i FILE\` or pull it)`, 'NOT_FOUND', { location: this.location(stage.from.range) });
      this.vertexDone(vertex, { error: err.message });
      throw err;
    }
    this.lease?.hold([image.manifestDigest, image.configDigest, ...image.manifest.layers.map((l) => l.digest)]);
    this.vertexDone(vertex, { cached: true });
    const config = cloneConfig(image.config);
    const layers: LayerRef[] = image.manifest.layers.map((l, i) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, diffId: image.config.rootfs.diff_ids[i] }));
    const state = mk(config, layers, keyOf({ from: image.manifestDigest }));
    await this.runTriggers(stage, state);
    return state;
  }

  /** Runs (and clears) the ONBUILD triggers the base of a stage carries. */
  private async runTriggers(stage: Stage, state: StageState): Promise<void> {
    const triggers = state.config.config.OnBuild ?? [];
    if (triggers.length === 0) return;
    state.config.config.OnBuild = null;
    await this.runOnbuild(stage, state, triggers);
  }

  private async runOnbuild(stage: Stage, state: StageState, triggers: readonly string[]): Promise<void> {
    const text = `FROM scratch\n${triggers.join('\n')}\n`;
    const parsed = toStages(parseDockerfile(text, { file: `${state.base} ONBUILD` }).ast, { buildArgs: {} });
    const instrs = parsed.stages[0].instructions;
    for (let i = 0; i < instrs.length; i++) {
      const instr = expandInstruction(instrs[i], this.expansionEnv(state), { escape: this.stages!.escape });
      await this.dispatch(stage, state, instr, instrs[i], {
        label: `[${state.name} ONBUILD] ${displayInstruction(instrs[i])}`,
        stepRef: `${this.dockerfilePath}#${stage.index}#onbuild${i}`,
        noCache: this.opts.noCache === true,
      });
    }
  }

  private platformArgs(): Map<string, string> {
    const arch = emptyConfig().architecture;
    const m = new Map<string, string>();
    for (const p of ['TARGET', 'BUILD']) {
      m.set(`${p}PLATFORM`, `linux/${arch}`);
      m.set(`${p}OS`, 'linux');
      m.set(`${p}ARCH`, arch);
      m.set(`${p}VARIANT`, '');
    }
    return m;
  }

  /** Variables for expanding instruction words: ARGs in scope, overridden by ENV. */
  private expansionEnv(state: StageState): Map<string, string> {
    const m = new Map(state.args);
    for (const [k, v] of envToMap(state.config.config.Env)) m.set(k, v);
    return m;
  }

  // ---------------------------------------------------------------------------
  // instructions

  private async dispatch(stage: Stage, state: StageState, instr: Instruction, raw: Instruction, step: { label: string; stepRef: string; noCache: boolean }): Promise<void> {
    const c = state.config;
    // metadata-only entries get their time when the image is written (fillHistoryTimes)
    const history = (createdBy: string, empty: boolean): void => {
      addHistory(c, { ...this.epochTime(), created_by: createdBy, comment: 'buildkit.dockerfile.v0', ...(empty ? { empty_layer: true } : {}) });
    };
    switch (instr.kind) {
      case 'ENV':
        for (const { key, value } of instr.pairs) setEnv(c, key, value);
        history(`ENV ${instr.pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`, true);
        return;
      case 'ARG':
        history(`ARG ${instr.args.map((a) => (a.default !== undefined ? `${a.key}=${a.default}` : a.key)).join(' ')}`, true);
        for (const a of instr.args) {
          state.argDecls.push(a.key);
          let value: string | undefined = this.opts.buildArgs?.[a.key];
          if (value !== undefined) this.usedArgs.add(a.key);
          if (value === undefined) value = a.default;
          if (value === undefined) {
            const meta = this.metaArgValue(a.key);
            if (meta !== undefined) value = meta;
          }
          if (value === undefined) value = this.platformArgs().get(a.key);
          if (value !== undefined) state.args.set(a.key, value);
          else state.args.delete(a.key);
        }
        return;
      case 'LABEL':
        c.config.Labels = { ...(c.config.Labels ?? {}) };
        for (const { key, value } of instr.pairs) c.config.Labels[key] = value;
        history(`LABEL ${instr.pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`, true);
        return;
      case 'MAINTAINER':
        c.author = instr.name;
        history(`MAINTAINER ${instr.name}`, true);
        return;
      case 'EXPOSE': {
        c.config.ExposedPorts = { ...(c.config.ExposedPorts ?? {}) };
        for (const p of expandPorts(instr.ports)) c.config.ExposedPorts[p] = {};
        history(`EXPOSE map[${Object.keys(c.config.ExposedPorts).sort().map((p) => `${p}:{}`).join(' ')}]`, true);
        return;
      }
      case 'USER':
        c.config.User = instr.user;
        history(`USER ${instr.user}`, true);
        return;
      case 'CMD':
        c.config.Cmd = commandArgs(instr.cmd, state.shell);
        if (instr.cmd.form === 'shell') c.config.ArgsEscaped = true;
        history(`CMD ${goQuoteSlice(c.config.Cmd)}`, true);
        return;
      case 'ENTRYPOINT':
        c.config.Entrypoint = commandArgs(instr.cmd, state.shell);
        if (instr.cmd.form === 'shell') c.config.ArgsEscaped = true;
        // BuildKit resets CMD when ENTRYPOINT is set in the same stage
        if (c.config.Cmd !== undefined && !this.cmdSetInStage(stage, raw)) c.config.Cmd = null;
        history(`ENTRYPOINT ${goQuoteSlice(c.config.Entrypoint)}`, true);
        return;
      case 'VOLUME':
        c.config.Volumes = { ...(c.config.Volumes ?? {}) };
        for (const v of instr.paths) {
          if (v.trim() === '') throw new BuildError('VOLUME specified can not be an empty string');
          c.config.Volumes[v] = {};
        }
        history(`VOLUME ${goSlice(instr.paths)}`, true);
        return;
      case 'STOPSIGNAL':
        c.config.StopSignal = instr.signal;
        history(`STOPSIGNAL ${instr.signal}`, true);
        return;
      case 'SHELL':
        state.shell = [...instr.shell];
        c.config.Shell = [...instr.shell];
        history(`SHELL ${goSlice(instr.shell)}`, true);
        return;
      case 'ONBUILD':
        // BuildKit records no history entry for ONBUILD
        c.config.OnBuild = [...(c.config.OnBuild ?? []), instr.expression];
        return;
      case 'HEALTHCHECK': {
        if (instr.test === 'NONE') {
          c.config.Healthcheck = { Test: ['NONE'] };
        } else {
          const hc: NonNullable<ImageConfigFile['config']['Healthcheck']> = { Test: [...instr.test] };
          if (instr.interval !== undefined) hc.Interval = instr.interval;
          if (instr.timeout !== undefined) hc.Timeout = instr.timeout;
          if (instr.startPeriod !== undefined) hc.StartPeriod = instr.startPeriod;
          if (instr.startInterval !== undefined) hc.StartInterval = instr.startInterval;
          if (instr.retries !== undefined) hc.Retries = instr.retries;
          c.config.Healthcheck = hc;
        }
        history(healthcheckHistory(c.config.Healthcheck), true);
        return;
      }
      case 'WORKDIR':
        await this.workdir(state, instr.path, step);
        return;
      case 'RUN':
        await this.runStep(stage, state, instr, step);
        return;
      case 'COPY':
      case 'ADD':
        await this.copyStep(state, instr, step);
        return;
      case 'FROM':
        throw new BuildError('FROM inside a stage', 'INTERNAL');
      default:
        return assertNever(instr);
    }
  }

  private cmdSetInStage(stage: Stage, entrypoint: Instruction): boolean {
    for (const i of stage.instructions) {
      if (i === entrypoint) return false;
      if (i.kind === 'CMD') return true;
    }
    return false;
  }

  private metaArgValue(key: string): string | undefined {
    for (const a of this.stages!.metaArgs) {
      for (const kv of a.args) {
        if (kv.key !== key) continue;
        const v = this.opts.buildArgs?.[key];
        if (v !== undefined) return v;
        return kv.default;
      }
    }
    return undefined;
  }

  private warnUnusedArgs(): void {
    const declared = new Set<string>();
    for (const a of this.stages!.metaArgs) for (const kv of a.args) declared.add(kv.key);
    const unused = Object.keys(this.opts.buildArgs ?? {}).filter((k) => !this.usedArgs.has(k) && !declared.has(k) && !PROXY_ARGS.has(k));
    if (unused.length > 0) this.emit({ type: 'warning', message: `one or more build-args [${unused.join(' ')}] were not consumed` });
  }

  private createdTime(): string {
    const t = this.opts.sourceDateEpoch !== undefined ? this.opts.sourceDateEpoch * 1000 : this.now;
    return new Date(t).toISOString();
  }

  /** `{ created: SOURCE_DATE_EPOCH }` when it is set, else nothing (the time is filled in later). */
  private epochTime(): { created?: string } {
    return this.opts.sourceDateEpoch !== undefined ? { created: new Date(this.opts.sourceDateEpoch * 1000).toISOString() } : {};
  }

  // ---------------------------------------------------------------------------
  // vertices and cache

  private newVertex(name: string): string {
    const vertex = `v${++this.vertexSeq}`;
    this.emit({ type: 'vertex', vertex, name, started: Date.now() });
    return vertex;
  }

  private vertexDone(vertex: string, fields: { cached?: boolean; error?: string; reason?: string; isolation?: string; name?: string }): void {
    this.emit({ type: 'vertex', vertex, name: fields.name ?? '', completed: Date.now(), ...fields });
  }

  /**
   * Looks a step up in the cache. On a hit, returns the recorded layer (or null for a
   * step that changed nothing); on a miss, the one-line reason.
   */
  private async lookup(key: Key, components: KeyComponents, stepRef: string, noCache: boolean, filesOrThunk: Files): Promise<{ hit: true; layer: LayerRef | null; created?: number } | { hit: false; reason: string }> {
    // the per-file digests (100,000 sha256 for a large context) only when a miss needs them
    const files = (): readonly FileDigest[] => (typeof filesOrThunk === 'function' ? filesOrThunk() : filesOrThunk);
    if (noCache) return { hit: false, reason: 'cache disabled (--no-cache)' };
    const rec = this.lease ? this.lease.getRecord(key) : this.store.db.get(key);
    if (rec) {
      if (!rec.layer) {
        this.store.db.touch(key, Date.now());
        return { hit: true, layer: null, created: rec.created };
      }
      if (await this.store.content.has(rec.layer.digest)) {
        this.store.db.touch(key, Date.now());
        return { hit: true, layer: rec.layer, created: rec.created };
      }
      const imported = this.remote?.lookup(key, stepRef, components, files());
      if (imported) return { hit: true, ...imported };
      return { hit: false, reason: `the cached layer ${rec.layer.digest.slice(7, 19)} is no longer in the store` };
    }
    // an imported cache (--cache-from) has it: CACHED; its layer is fetched only if needed
    const imported = this.remote?.lookup(key, stepRef, components, files());
    if (imported) return { hit: true, ...imported };
    const prev = this.store.db.latestForStep(stepRef, key);
    return { hit: false, reason: explainMiss(components, files(), prev, prev ? this.recordFiles(prev.key) : [], this.missed) };
  }

  /** The per-file digests recorded with a cache record (read once for a miss and its relink). */
  private recordFiles(key: string): readonly FileDigest[] {
    if (this.lastFiles?.key !== key) this.lastFiles = { key, files: this.store.db.files(key) };
    return this.lastFiles.files;
  }

  /**
   * Whether `lookup` will hit this key in the local store (the record is held by the
   * build's lease, so a concurrent prune cannot take it in between). No side effects.
   */
  private async peekHit(key: Key): Promise<boolean> {
    const rec = this.lease ? this.lease.getRecord(key) : this.store.db.get(key);
    if (!rec) return false;
    return !rec.layer || (await this.store.content.has(rec.layer.digest));
  }

  /** Builds a file-changing step through the cache: hit → reuse, miss → `work` and record. */
  private async cachedStep(
    state: StageState,
    step: { label: string; stepRef: string; noCache: boolean },
    components: KeyComponents,
    files: Files,
    historyText: string,
    work: (vertex: string) => Promise<LayerRef | null>,
  ): Promise<void> {
    const key = keyOf(components);
    const vertex = this.newVertex(step.label);
    const found = await this.lookup(key, components, step.stepRef, step.noCache, files);
    let layer: LayerRef | null;
    /** When the layer was made (BuildKit's history time for a layer: the cache record's creation). */
    let made = Date.now();
    if (found.hit) {
      layer = found.layer;
      if (found.created !== undefined) made = found.created;
      this.vertexDone(vertex, { cached: true, name: step.label });
      this.steps.push({ stepRef: step.stepRef, description: step.label, stage: state.name, cached: true, key });
    } else {
      this.missed.add(key);
      this.emit({ type: 'vertex', vertex, name: step.label, cached: false, reason: found.reason });
      try {
        layer = await work(vertex);
      } catch (err) {
        this.vertexDone(vertex, { error: err instanceof Error ? err.message : String(err), name: step.label });
        this.steps.push({ stepRef: step.stepRef, description: step.label, stage: state.name, cached: false, reason: found.reason, key });
        throw err;
      }
      const now = Date.now();
      made = now;
      this.store.db.save(
        { key, stepRef: step.stepRef, description: historyText, components, ...(layer ? { layer } : {}), created: now, lastUsed: now, usageCount: 1 },
        typeof files === 'function' ? files() : files,
      );
      this.vertexDone(vertex, { name: step.label });
      this.steps.push({ stepRef: step.stepRef, description: step.label, stage: state.name, cached: false, reason: found.reason, key });
    }
    state.fsKey = key;
    if (layer) {
      state.layers.push(layer);
      state.config.rootfs.diff_ids = [...state.config.rootfs.diff_ids, layer.diffId];
    }
    const created = this.opts.sourceDateEpoch !== undefined ? this.epochTime() : layer ? { created: new Date(made).toISOString() } : {};
    addHistory(state.config, { ...created, created_by: historyText, comment: 'buildkit.dockerfile.v0', ...(layer ? {} : { empty_layer: true }) });
  }

  /**
   * Runs `use` on the committed snapshot of a chain of layers. A `cache prune` whose pass
   * read the leases before this build held the chain may still remove that snapshot
   * between the lookup and `use` (its prepare or view then finds no parent): the chain is
   * held by now, so no later pass takes it, and it is unpacked again once.
   */
  private async onChain<T>(layers: readonly LayerRef[], use: (parent: string | undefined) => Promise<T>): Promise<T> {
    const parent = await this.parentSnapshot(layers);
    try {
      return await use(parent);
    } catch (err) {
      if (!(err instanceof SnapshotNotFoundError) || parent === undefined || err.key !== parent) throw err;
      return use(await this.parentSnapshot(layers));
    }
  }

  /** The committed snapshot holding a chain of layers (unpacked from the store if needed). */
  private async parentSnapshot(layers: readonly LayerRef[]): Promise<string | undefined> {
    if (layers.length === 0) return undefined;
    // hold the chain (and its blobs) before unpacking, so a concurrent prune keeps it
    this.lease?.hold([...layers.map((l) => l.digest), ...layers.map((_, i) => chainId(layers.slice(0, i + 1).map((l) => l.diffId))!)]);
    await this.remote?.ensureLayers(layers);
    // the applied files are never fsynced: after a machine crash the snapshot is unpacked again (volatile.ts)
    const boot = await currentBootId();
    if (boot !== undefined) await ensureVolatileStamp(this.store.root, boot);
    return unpackImage(this.store.content, this.store.snapshots, layers, boot !== undefined ? { labels: { [VOLATILE_LABEL]: boot } } : {});
  }

  /**
   * Prepares a writable snapshot on top of `layers`, mounts it, runs `fn` on the
   * mounted root, and turns the change into a layer (null when nothing changed).
   */
  private async withWritableRoot(
    layers: readonly LayerRef[],
    fn: (rootfs: string) => Promise<string[]>,
    vertex?: string,
    stubOpts: { keep?: readonly string[]; beforeMount?: (upper: string) => Promise<void>; reuse?: () => LayerReuse | undefined } = {},
  ): Promise<LayerRef | null> {
    const active = `active-${process.pid}-${randomBytes(6).toString('hex')}`;
    const mounts = await this.onChain(layers, (parent) => this.store.snapshots.prepare(active, parent));
    let committed = false;
    let volatileBoot: string | undefined;
    try {
      const upper = mounts.length === 1 && mounts[0]!.type === 'overlay' ? optionValue(mounts[0]!.options, 'upperdir') : undefined;
      if (stubOpts.beforeMount !== undefined && upper !== undefined) await stubOpts.beforeMount(upper);
      const dir = await this.store.tempDir('rootfs');
      let stubs: string[];
      // volatile: the unmount skips syncing the whole backing filesystem (see volatile.ts for the guard)
      const bootId = upper !== undefined && volatileMounts !== false ? await currentBootId() : undefined;
      if (bootId !== undefined) {
        try {
          await mountAll([{ ...mounts[0]!, options: [...mounts[0]!.options, 'volatile'] }], dir);
          volatileMounts = true;
          volatileBoot = bootId;
        } catch (err) {
          if (volatileMounts === true) throw err;
          volatileMounts = false; // kernel before 5.10: plain mounts from now on
          await mountAll(mounts, dir);
        }
      } else {
        await mountAll(mounts, dir);
      }
      // overlay: the step writes into the store's filesystem (a copy-backend store may not sync)
      const stopPump = upper !== undefined ? pumpWriteback(this.store.snapshots.root) : undefined;
      try {
        stubs = await fn(dir);
      } finally {
        await stopPump?.();
        await unmountAll(dir);
        await rm(dir, { recursive: true, force: true });
      }
      this.checkAbort();
      const exportStarted = Date.now();
      const reuse = upper !== undefined ? stubOpts.reuse?.() : undefined;
      const exportOpts = {
        ...(this.opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: this.opts.sourceDateEpoch } : {}),
        mountStubs: [...DEFAULT_MOUNT_STUBS.filter((s) => !(stubOpts.keep ?? []).includes(s)), ...stubs.map((s) => posix.join('/', s))],
      };
      // a big uncompressed layer is only hashed: its blob becomes virtual (regenerated
      // from the committed snapshot), once a syncfs made the snapshot's data durable;
      // the syncfs starts before the tar pass, so the disk works while we hash
      let synced: Promise<boolean> | undefined;
      const desc = await exportLayer(this.store.snapshots, active, this.store.content, {
        ...exportOpts,
        compression: this.opts.compression ?? 'uncompressed',
        ...(this.opts.compressionLevel !== undefined ? { level: this.opts.compressionLevel } : {}),
        signal: this.abort.signal,
        ...(reuse !== undefined ? { reuse } : {}),
        // overlay only: the copy backend is what a store gets where overlay cannot work
        // (e.g. on FUSE), and there a syncfs may not reach the data
        ...(upper !== undefined ? { virtualMinSize: this.opts.virtualLayerMinBytes ?? VIRTUAL_LAYER_MIN_BYTES } : {}),
        onVirtual: () => {
          synced = syncFilesystem(this.store.snapshots.root).then(
            () => true,
            () => false, // then the blob is written after all
          );
        },
      });
      if (desc.empty) return null;
      if (vertex !== undefined) {
        this.emit({ type: 'status', vertex, id: `exporting layer ${desc.digest.slice(7, 19)}`, current: desc.uncompressedSize, total: desc.uncompressedSize, started: exportStarted, completed: Date.now() });
      }
      const layer: LayerRef = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size, diffId: desc.diffId };
      const chain = chainId([...layers.map((l) => l.diffId), layer.diffId])!;
      // Only unmounting a plain (not volatile) overlay syncs what the step wrote (its upper
      // filesystem); a volatile overlay, a bind mount (copy backend, or no parent) or a
      // direct write does not: such a snapshot is labelled with this boot (volatile.ts).
      const unsynced = upper === undefined || volatileBoot !== undefined ? (volatileBoot ?? (await currentBootId())) : undefined;
      const durable = !desc.stored && synced !== undefined && (await synced);
      crashPoint('virtual-synced');
      try {
        if (durable) {
          // our syncfs covered the step's files: committed without the volatile label
          await this.store.snapshots.commit(chain, active);
        } else {
          if (unsynced !== undefined) await ensureVolatileStamp(this.store.root, unsynced);
          await this.store.snapshots.commit(chain, active, unsynced !== undefined ? { labels: { [VOLATILE_LABEL]: unsynced } } : undefined);
        }
        committed = true;
      } catch (err) {
        // the same content was committed before (another build or an earlier run): keep that one
        if ((err as { code?: string }).code !== 'ALREADY_EXISTS') throw err;
      }
      if (!desc.stored && !(await this.store.content.has(layer.digest))) {
        if (durable && committed) {
          // the ancestors' data was synced by the same syncfs: none may stay volatile,
          // or the guard would drop the chain (and with it the blob) after a crash
          await markDurable(this.store.snapshots, chain, await currentBootId());
          await this.store.content.addVirtual({ digest: layer.digest, size: layer.size, recipe: snapshotDiffRecipe(chain, exportOpts) });
        } else {
          // no syncfs, or another snapshot holds this chain: write the blob, verified
          const tar = diffTarStream(this.store.snapshots, committed ? chain : active, exportOpts);
          const written = await writeLayer(tar, this.store.content, { compression: 'uncompressed', signal: this.abort.signal });
          if (written.digest !== layer.digest) throw new DigestMismatchError(layer.digest, written.digest);
        }
      }
      return layer;
    } finally {
      if (!committed) await this.store.snapshots.remove(active).catch(() => {});
    }
  }

  // ---------------------------------------------------------------------------
  // WORKDIR

  private async workdir(state: StageState, path: string, step: { label: string; stepRef: string; noCache: boolean }): Promise<void> {
    const cur = state.config.config.WorkingDir || '/';
    const wd = posix.resolve(cur, path);
    state.config.config.WorkingDir = wd;
    const user = state.config.config.User || '';
    const components: KeyComponents = { parent: state.fsKey, op: canonicalJson({ kind: 'WORKDIR', path: wd, user }) };
    await this.cachedStep(state, step, components, [], `WORKDIR ${wd}`, async (vertex) =>
      this.withWritableRoot(state.layers, async (rootfs) => {
        // every missing component is created 0755 and owned by the current USER, as BuildKit's mkdir does
        const ids = await resolveUser(rootfs, user).catch((err: unknown) => {
          throw new BuildError((err as Error).message, 'INVALID_ARGUMENT', { cause: err });
        });
        let cur = '/';
        for (const part of wd.split('/').filter(Boolean)) {
          cur = posix.join(cur, part);
          const host = await resolveInRoot(rootfs, cur);
          const st = await lstat(host).catch(() => undefined);
          if (st) {
            // BuildKit's mkdir sets the times of the directory even when it exists, so the layer carries it
            if (cur === wd && st.isDirectory()) await utimes(host, st.atime, st.mtime);
            continue;
          }
          await mkdir(host, { mode: 0o755 });
          await chmod(host, 0o755);
          await chown(host, ids.uid, ids.gid);
        }
        return [];
      }, vertex),
    );
  }

  // ---------------------------------------------------------------------------
  // RUN

  /** BuildKit's `|N K=V ...` history prefix: this stage's ARGs with their current values. */
  private argsPrefix(state: StageState): string {
    if (state.argDecls.length === 0) return '';
    const env = this.expansionEnv(state);
    return `|${state.argDecls.length} ${state.argDecls.map((k) => `${k}=${env.get(k) ?? ''}`).join(' ')} `;
  }

  private runEnv(state: StageState): string[] {
    const env = envToMap(state.config.config.Env);
    const out = new Map<string, string>();
    for (const [k, v] of state.args) if (!env.has(k)) out.set(k, v);
    for (const [k, v] of Object.entries(this.opts.buildArgs ?? {})) if (PROXY_ARGS.has(k) && !env.has(k)) out.set(k, v);
    for (const [k, v] of env) out.set(k, v);
    return [...out].map(([k, v]) => `${k}=${v}`);
  }

  private async runStep(stage: Stage, state: StageState, instr: Extract<Instruction, { kind: 'RUN' }>, step: { label: string; stepRef: string; noCache: boolean }): Promise<void> {
    if (instr.security === 'insecure') throw new BuildError('RUN --security=insecure needs the security.insecure entitlement, which tsbuild never grants (steps always run confined)', 'FAILED_PRECONDITION');
    const { argv, pipe } = runArgv(instr, state.shell);
    const cwd = state.config.config.WorkingDir || '/';
    // no USER: uid 0 without reading /etc/passwd (FROM scratch has none), as BuildKit does
    const user = state.config.config.User || '';
    const network: NetworkMode = instr.network ?? this.opts.network ?? 'default';
    const env = this.runEnv(state);
    const keyArgs: Record<string, string> = {};
    for (const [k, v] of state.args) keyArgs[k] = v;
    for (const k of state.args.keys()) this.usedArgs.add(k);
    // inputs that RUN mounts read: stages and context files
    const inputs: Record<string, string> = {};
    let filesDigest: string | undefined;
    const files: FileDigest[] = [];
    const mountPlan: MountPlan[] = [];
    const sshCount = { n: 0 };
    for (const [i, m] of instr.mounts.entries()) {
      const plan = await this.planMount(stage, m, i, sshCount);
      mountPlan.push(plan);
      if (plan.inputKey) inputs[`mount${i}`] = plan.inputKey;
      if (plan.files) {
        files.push(...plan.files.files);
        filesDigest = sha256Key(`${filesDigest ?? ''}${plan.files.digest}`);
      }
    }
    const op = canonicalJson({
      kind: 'RUN',
      argv,
      // ARG values are keyed separately (components.args) so a miss can name the ARG
      env: state.config.config.Env ?? [],
      cwd,
      user,
      network,
      mounts: mountPlan.map((p) => p.keyPart),
    });
    const components: KeyComponents = { parent: state.fsKey, op, ...(Object.keys(keyArgs).length ? { args: keyArgs } : {}), ...(filesDigest ? { files: filesDigest } : {}), ...(Object.keys(inputs).length ? { inputs } : {}) };
    const historyText = `RUN ${this.argsPrefix(state)}${argv.join(' ')} # buildkit`;
    if (pipe) mountPlan.push(heredocPipeMount(pipe, this.store));
    await this.cachedStep(state, step, components, files, historyText, (vertex) =>
      this.limit(async () => {
        this.checkAbort();
        const executor = await this.getExecutor();
        this.emit({ type: 'vertex', vertex, name: step.label, isolation: executor.name });
        const tail: string[] = [];
        let partial = '';
        const onOut = (stream: 1 | 2) => (chunk: Uint8Array): void => {
          crashPoint('run');
          this.emit({ type: 'log', vertex, stream, data: chunk });
          partial += Buffer.from(chunk).toString('utf8');
          const lines = partial.split('\n');
          partial = lines.pop() ?? '';
          tail.push(...lines);
          if (tail.length > 20) tail.splice(0, tail.length - 20);
        };
        const cleanups: (() => Promise<void>)[] = [];
        try {
          return await this.withWritableRoot(state.layers, async (rootfs) => {
            const resolved = await resolveUser(rootfs, user).catch((err: unknown) => {
              throw new BuildError((err as Error).message, 'INVALID_ARGUMENT', { cause: err });
            });
            // BuildKit's processes always carry their primary gid as a supplementary group
            const extra = user.includes(':') ? [] : resolved.additionalGids;
            const ids = { uid: resolved.uid, gid: resolved.gid, additionalGids: [...new Set([resolved.gid, ...extra])] };
            // runc's mount points for /proc, /dev and /sys stay in the layer, as with BuildKit
            for (const d of RUNTIME_DIRS) {
              const host = join(rootfs, d);
              if (!(await lstat(host).catch(() => undefined))) await mkdir(host, { mode: 0o755 });
            }
            const hostCwd = await resolveInRoot(rootfs, cwd);
            await mkdir(hostCwd, { recursive: true });
            const mounts: ExecMount[] = [];
            const stepEnv = [...env];
            for (const p of mountPlan) {
              mounts.push(...(await p.prepare(cleanups)));
              if (p.envVars) for (const [k, v] of Object.entries(await p.envVars())) stepEnv.push(`${k}=${v}`);
            }
            const res = await executor.run({
              rootfs,
              mounts,
              process: { args: argv, env: stepEnv, cwd, user: ids },
              network,
              onStdout: onOut(1),
              onStderr: onOut(2),
              signal: this.abort.signal,
            });
            if (partial) tail.push(partial);
            if (res.exitCode !== 0) throw new ExecFailedError(step.label, argv, res.exitCode, tail.slice(-10));
            return res.createdStubs;
          }, vertex, { keep: RUNTIME_DIRS.map((d) => `/${d}`) });
        } finally {
          for (const c of cleanups.reverse()) await c();
        }
      }),
    );
  }

  private getExecutor(): Promise<Executor> {
    this.executor ??= createExecutor({ isolation: this.opts.isolation ?? 'auto', stateDir: join(this.store.root, 'runc') });
    return this.executor;
  }

  /** How one `RUN --mount` is keyed and set up. */
  private async planMount(stage: Stage, m: Extract<Instruction, { kind: 'RUN' }>['mounts'][number], i: number, sshCount: { n: number }): Promise<MountPlan> {
    void stage;
    void i;
    const target = m.target ?? (m.type === 'secret' ? `/run/secrets/${m.id ?? m.source ?? ''}` : m.type === 'ssh' ? `/run/buildkit/ssh_agent.${sshCount.n++}` : undefined);
    if (!target) throw new BuildError(`RUN --mount of type ${m.type} needs a target`, 'INVALID_ARGUMENT');
    switch (m.type) {
      case 'tmpfs':
        return { keyPart: { type: 'tmpfs', target }, prepare: async () => [{ type: 'tmpfs', target, ...(m.size !== undefined ? { size: m.size } : {}) }] };
      case 'cache': {
        const id = m.id ?? target;
        const dir = join(this.store.root, 'cache-mounts', sha256Key(id).slice(7, 39));
        const sharing = m.sharing ?? 'shared';
        return {
          // what BuildKit's LLB carries for a cache mount (id, sharing, uid/gid/mode of the new dir, readonly) is keyed; unset options keep the plain key
          keyPart: {
            type: 'cache',
            target,
            ...(m.id !== undefined ? { id: m.id } : {}),
            ...(m.sharing !== undefined ? { sharing: m.sharing } : {}),
            ...(m.uid !== undefined ? { uid: m.uid } : {}),
            ...(m.gid !== undefined ? { gid: m.gid } : {}),
            ...(m.mode !== undefined ? { mode: m.mode } : {}),
            ...(m.readonly === true ? { readonly: true } : {}),
          },
          prepare: async (cleanups) => {
            let use = dir;
            if (sharing === 'locked') {
              const release = await lockCacheMount(id);
              cleanups.push(async () => release());
            } else if (sharing === 'private' && (cacheUsers.get(id) ?? 0) > 0) {
              // someone is using the shared directory: this step gets a fresh one of its own
              use = await this.store.tempDir('cache-private');
              cleanups.push(() => rm(use, { recursive: true, force: true }));
            }
            cacheUsers.set(id, (cacheUsers.get(id) ?? 0) + 1);
            cleanups.push(async () => {
              cacheUsers.set(id, (cacheUsers.get(id) ?? 1) - 1);
            });
            if (!(await lstat(use).catch(() => undefined))) {
              await mkdir(join(use, '..'), { recursive: true });
              // a parallel step sharing the cache may have made it since the lstat
              await mkdir(use).catch((err: unknown) => {
                if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
              });
            }
            if (use !== dir || !createdCacheDirs.has(use)) {
              // a new cache directory takes uid/gid/mode from the mount options (root, 0755 by default)
              const st = await lstat(use);
              if (st.nlink <= 2 && (await readdir(use)).length === 0) {
                await chown(use, m.uid ?? 0, m.gid ?? 0);
                await chmod(use, m.mode ?? 0o755);
              }
              createdCacheDirs.add(use);
            }
            return [{ type: 'bind', source: use, target, readonly: m.readonly === true }];
          },
        };
      }
      case 'secret': {
        const wanted = m.id ?? posix.basename(target);
        const secret = (this.opts.secrets ?? []).find((s) => s.id === wanted);
        if (!secret) {
          if (m.required) throw new BuildError(`secret ${wanted} not found: pass it with --secret id=${wanted},src=FILE`, 'NOT_FOUND');
          return { keyPart: { type: 'secret', target }, prepare: async () => [] };
        }
        const value = async (): Promise<Buffer> =>
          secret.src !== undefined
            ? readFile(secret.src).catch((err: unknown) => {
                throw new BuildError(`secret ${secret.id}: cannot read ${secret.src}: ${(err as Error).message}`, 'NOT_FOUND');
              })
            : Buffer.from(process.env[secret.env ?? secret.id] ?? '');
        if (m.env !== undefined) {
          // --mount=type=secret,env=NAME: the value in the step's environment (and a file only when target= is given)
          const envName = m.env;
          return {
            keyPart: { type: 'secret', env: envName, target: m.target ?? null, id: secret.id },
            envVars: async () => ({ [envName]: (await value()).toString('utf8') }),
            prepare: async (cleanups) => (m.target !== undefined ? [await this.secretFile(await value(), m, target, cleanups)] : []),
          };
        }
        return {
          keyPart: { type: 'secret', target, id: secret.id },
          prepare: async (cleanups) => [await this.secretFile(await value(), m, target, cleanups)],
        };
      }
      case 'ssh': {
        const id = m.id ?? 'default';
        const src = (this.opts.ssh ?? []).find((x) => x.id === id);
        if (!src || src.paths.length === 0) {
          if (m.required === false) return { keyPart: { type: 'ssh', target }, prepare: async () => [] };
          throw new BuildError(`no SSH key ${JSON.stringify(id)} forwarded from the client: pass --ssh ${id}=$SSH_AUTH_SOCK`, 'NOT_FOUND');
        }
        const sock = src.paths[0];
        const st = await lstat(sock).catch(() => undefined);
        if (!st?.isSocket()) throw new BuildError(`--ssh ${id}: ${sock} is not an agent socket (key files are not supported)`, 'INVALID_ARGUMENT');
        return {
          keyPart: { type: 'ssh', target, id },
          envVars: async () => ({ SSH_AUTH_SOCK: target }),
          prepare: async () => [{ type: 'bind', source: sock, target, readonly: false }],
        };
      }
      case 'bind': {
        const from = m.from;
        const rw = m.readonly === false;
        let ctx: BuildContext | undefined = from === undefined ? this.context! : undefined;
        let src: StageState | undefined;
        if (from !== undefined) {
          const r = await this.resolveFrom(from);
          if (r.context) ctx = r.context;
          else src = r.state;
        }
        if (ctx) {
          const c = ctx;
          const matches = await c.match(m.source ?? '.');
          if (matches.length === 0) throw new BuildError(`RUN --mount source ${JSON.stringify(m.source ?? '.')} not found in the build context`, 'NOT_FOUND');
          const files = await c.digestSources(matches);
          const source = c.abs(matches[0].root.rel);
          return {
            keyPart: { type: 'bind', target, source: m.source ?? '.', rw, ...(from !== undefined ? { from } : {}) },
            files,
            prepare: async (cleanups) => [{ type: 'bind', source: rw ? await this.scratchCopy(source, cleanups) : source, target, readonly: !rw }],
          };
        }
        const st = src!;
        return {
          keyPart: { type: 'bind', target, from: st.fsKey, source: m.source ?? '/', rw },
          inputKey: st.fsKey,
          prepare: async (cleanups) => {
            const { dir } = await this.mountView(st.layers, cleanups);
            const host = await resolveInRoot(dir, m.source ?? '/');
            return [{ type: 'bind', source: rw ? await this.scratchCopy(host, cleanups) : host, target, readonly: !rw }];
          },
        };
      }
      default:
        throw new BuildError(`unknown mount type ${(m as { type: string }).type}`, 'INVALID_ARGUMENT');
    }
  }

  /** A throw-away copy of a bind source, so writes of a `rw` bind mount are discarded. */
  private async scratchCopy(source: string, cleanups: (() => Promise<void>)[]): Promise<string> {
    const dir = await this.store.tempDir('bind-rw');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const copy = join(dir, 'src');
    await cp(source, copy, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    return copy;
  }

  /** The file a secret is mounted from (mode/uid/gid from the mount, 0400 root by default). */
  private async secretFile(value: Buffer, m: Extract<Instruction, { kind: 'RUN' }>['mounts'][number], target: string, cleanups: (() => Promise<void>)[]): Promise<ExecMount> {
    const dir = await this.store.tempDir('secret');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'value');
    await writeFile(file, value, { mode: 0o400 });
    await chown(file, m.uid ?? 0, m.gid ?? 0);
    await chmod(file, m.mode ?? 0o400);
    return { type: 'bind', source: file, target, readonly: true };
  }

  /**
   * What a `--from`/`FROM` name means: a named build context (`--build-context`), a stage,
   * or an image in the store. A directory context is returned as a BuildContext.
   */
  private async resolveFrom(name: string): Promise<{ state: StageState; context?: BuildContext }> {
    const bc = this.opts.buildContexts?.[name];
    if (bc !== undefined) {
      if (/^(docker-image|oci-layout):\/\//.test(bc)) return { state: await this.imageState(bc) };
      let ctx = this.namedContexts.get(name);
      if (!ctx) {
        ctx = BuildContext.open(resolvePath(bc.replace(/^local:\/\//, '')), this.store.db);
        this.namedContexts.set(name, ctx);
      }
      return { state: await this.imageState('scratch'), context: await ctx };
    }
    const depIdx = this.stageIndexByName(name);
    if (depIdx !== undefined) return { state: await this.stageResult(depIdx) };
    return { state: await this.imageState(name) };
  }

  /**
   * Finds an image by reference: `docker-image://NAME` and plain names in the local store
   * (the one place a registry pull can hook in), `oci-layout://DIR[:TAG]` loaded from disk.
   */
  private async lookupImage(ref: string, vertex?: string): Promise<StoredImage | undefined> {
    const mapped = this.opts.buildContexts?.[ref];
    if (mapped !== undefined && /^(docker-image|oci-layout):\/\//.test(mapped)) ref = mapped;
    if (ref.startsWith('docker-image://')) ref = ref.slice('docker-image://'.length);
    if (ref.startsWith('oci-layout://')) {
      const spec = ref.slice('oci-layout://'.length);
      const m = /^(.*?)(?::([\w][\w.-]*)|@(sha256:[0-9a-f]{64}))?$/.exec(spec)!;
      const loaded = await loadArchive(this.store.content, this.store.images, resolvePath(m[1]));
      const want = m[3] ?? m[2];
      // a tag is the entry's ref.name (what docker, containerd and skopeo write) or its name's tag
      const hit = loaded.find((l) => want === undefined || l.image.manifestDigest === want || l.refName === want || (l.name ?? '').endsWith(`:${want}`)) ?? (want === undefined ? loaded[0] : undefined);
      return hit?.image;
    }
    // the local store first; else (or with --pull) the image's registry
    return this.remote ? this.remote.resolveImage(ref, vertex) : this.store.images.resolve(ref);
  }

  /** Mounts a read-only view of a chain of layers; the unmount goes into `cleanups`. */
  private async mountView(layers: readonly LayerRef[], cleanups: (() => Promise<void>)[]): Promise<{ dir: string }> {
    const dir = await this.store.tempDir('view');
    if (layers.length === 0) {
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      return { dir };
    }
    const key = `view-${process.pid}-${randomBytes(6).toString('hex')}`;
    const mounts = await this.onChain(layers, (parent) => this.store.snapshots.view(key, parent));
    await mountAll(mounts, dir);
    cleanups.push(async () => {
      await unmountAll(dir);
      await rm(dir, { recursive: true, force: true });
      await this.store.snapshots.remove(key);
    });
    return { dir };
  }

  /** The state of an image named by `COPY --from` or `--mount from=`. */
  private async imageState(name: string): Promise<StageState> {
    if (name === 'scratch') {
      return { name, layers: [], config: emptyConfig(), fsKey: keyOf({ from: 'scratch' }), args: new Map(), argDecls: [], shell: [...DEFAULT_SHELL], base: name };
    }
    const image = await this.lookupImage(name);
    if (!image) throw new BuildError(`${name}: not found: no stage and no image in the local store has this name`, 'NOT_FOUND');
    this.lease?.hold([image.manifestDigest, image.configDigest, ...image.manifest.layers.map((l) => l.digest)]);
    return {
      name,
      layers: image.manifest.layers.map((l, i) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, diffId: image.config.rootfs.diff_ids[i] })),
      config: image.config,
      fsKey: keyOf({ from: image.manifestDigest }),
      args: new Map(),
      argDecls: [],
      shell: [...DEFAULT_SHELL],
      base: name,
    };
  }

  // ---------------------------------------------------------------------------
  // COPY / ADD

  private async copyStep(state: StageState, instr: Extract<Instruction, { kind: 'COPY' | 'ADD' }>, step: { label: string; stepRef: string; noCache: boolean }): Promise<void> {
    const cwd = state.config.config.WorkingDir || '/';
    const dest = posix.isAbsolute(instr.dest) ? instr.dest : `${posix.resolve(cwd, instr.dest)}${instr.dest.endsWith('/') || instr.dest === '.' ? '/' : ''}`;
    if (instr.checksum !== undefined && instr.kind === 'ADD' && (instr.sources.length !== 1 || !isHttpSource(instr.sources[0]))) {
      throw new BuildError(instr.sources.length !== 1 ? 'checksum can\'t be specified for multiple sources' : 'checksum can\'t be specified for non-HTTP sources', 'INVALID_ARGUMENT');
    }
    const op = canonicalJson({ kind: instr.kind, dest, chown: instr.chown, chmod: instr.chmod, link: instr.link, sources: instr.sources, heredocs: instr.heredocs.map((h) => h.name) });
    // BuildKit's history text: --parents/--chown/--chmod as given, sources, inline documents, dest
    const flags = `${instr.parents ? ' --parents' : ''}${instr.chown !== undefined ? ` --chown=${instr.chown}` : ''}${instr.chmod !== undefined ? ` --chmod=${instr.chmod}` : ''}`;
    const historyText = `${instr.kind}${flags}${instr.sources.map((x) => ` ${x}`).join('')}${instr.heredocs.map((h) => ` <<${h.name}`).join('')} ${instr.dest} # buildkit`;
    const cleanups: (() => Promise<void>)[] = [];
    const tmp = async (prefix: string): Promise<string> => {
      const dir = await this.store.tempDir(prefix);
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      return dir;
    };
    try {
      const groups: { source: BuildContext; matches: SourceMatch[]; unpack: boolean; dest?: string }[] = [];
      const exclude = instr.exclude.length > 0 ? new IgnoreMatcher(parseDockerignore(instr.exclude.join('\n'))) : undefined;
      // a pattern without a slash also excludes by name at any depth (`--exclude=*.log`)
      const byName = instr.exclude.some((p) => !p.includes('/')) ? new IgnoreMatcher(parseDockerignore(instr.exclude.filter((p) => !p.includes('/')).join('\n'))) : undefined;
      const excluded = (rel: string): boolean => exclude!.ignores(rel) || (byName !== undefined && rel.split('/').some((seg) => byName.ignores(seg)));
      const keyParts: string[] = [];
      let inputs: Record<string, string> | undefined;
      let sourceMemo: Key | undefined;
      let local: BuildContext = this.context!;
      if (instr.from !== undefined) {
        const src = await this.resolveFrom(instr.from);
        if (src.context) {
          local = src.context;
        } else {
          // An imported cache record for this very COPY (same parent, instruction and source
          // stage key) makes the step CACHED without reading the source stage's files, so its
          // layers are never fetched (BuildKit's definition-based cache key).
          const known = step.noCache || instr.kind !== 'COPY' || instr.heredocs.length > 0 ? undefined : this.remote?.lookupDefinition({ parent: state.fsKey, op, inputs: { from: src.state.fsKey } });
          if (known) {
            await this.cachedStep(state, step, known, [], historyText, () => Promise.reject(new BuildError(`the imported cache record ${keyOf(known)} was expected to hit`, 'INTERNAL')));
            return;
          }
          // the digest of these sources in this layer chain, remembered from an earlier build:
          // when the step is then CACHED, the source stage is never mounted (v2: digests that
          // name hard links and device numbers; a v1 memo was computed without them)
          const chain = chainId(src.state.layers.map((l) => l.diffId));
          if (chain !== undefined && instr.kind === 'COPY' && instr.heredocs.length === 0) {
            sourceMemo = keyOf({ v: 2, chain, sources: instr.sources, exclude: instr.exclude, parents: instr.parents === true });
            const digest = step.noCache ? undefined : this.store.db.sourceDigest(sourceMemo);
            if (digest !== undefined) {
              const known: KeyComponents = { parent: state.fsKey, op, files: sha256Key(`local ${digest}`), inputs: { from: src.state.fsKey } };
              if (await this.peekHit(keyOf(known))) {
                await this.cachedStep(state, step, known, [], historyText, () => Promise.reject(new BuildError(`the cache record ${keyOf(known)} was expected to hit`, 'INTERNAL')));
                return;
              }
            }
          }
          const { dir } = await this.mountView(src.state.layers, cleanups);
          local = BuildContext.tree(dir);
          inputs = { from: src.state.fsKey };
        }
      }
      const localPatterns: string[] = [];
      for (const s of instr.sources) {
        const git = instr.kind === 'ADD' ? parseGitRef(s) : undefined;
        if (git) {
          const { root, commit } = await fetchGit(git, await tmp('git'), instr.keepGitDir);
          const tree = BuildContext.tree(root);
          groups.push({ source: tree, matches: await tree.match('.'), unpack: false });
          keyParts.push(`git ${git.remote} ${commit} ${git.subdir ?? ''} ${instr.keepGitDir}`);
        } else if (isHttpSource(s)) {
          if (instr.kind !== 'ADD') throw new BuildError('source can\'t be a URL for COPY', 'INVALID_ARGUMENT');
          const dir = await tmp('http');
          const { name, digest } = await fetchHttp(s, dir, instr.checksum, this.abort.signal);
          const tree = BuildContext.tree(dir);
          groups.push({ source: tree, matches: await tree.match(name), unpack: false });
          keyParts.push(`url ${s} ${digest}`);
        } else {
          localPatterns.push(s);
        }
      }
      const localMatches: SourceMatch[] = [];
      for (const s of localPatterns) {
        const found = await local.match(s);
        // a wildcard may match nothing (BuildKit allows empty wildcards); a plain path must exist
        if (found.length === 0 && !/[*?[]/.test(s)) {
          throw new BuildError(
            instr.from !== undefined
              ? `failed to compute cache key: "${posix.resolve('/', s)}": not found`
              : `failed to compute cache key: "${posix.resolve('/', s)}": not found (is it excluded by .dockerignore?)`,
            'NOT_FOUND',
          );
        }
        for (const m of found) {
          if (!exclude) {
            localMatches.push(m);
            continue;
          }
          // --exclude: patterns against the path in the source and relative to the matched root
          const kept = m.entries.filter((e) => !excluded(e.rel) && (e === m.root || !excluded(posix.relative(m.root.rel, e.rel))));
          if (kept.length > 0 && kept[0] === m.root) localMatches.push({ ...m, entries: kept });
        }
      }
      let files: () => FileDigest[] = () => [];
      if (localMatches.length > 0) {
        const d = await local.digestSources(localMatches);
        keyParts.push(`local ${d.digest}`);
        if (sourceMemo !== undefined && keyParts.length === 1) this.store.db.saveSourceDigest(sourceMemo, d.digest, Date.now());
        if (local === this.context) files = () => d.files;
        if (instr.parents) {
          // --parents: each match keeps its path (after a `/./` pivot, if any) under the destination
          const destDir = dest.endsWith('/') ? dest : `${dest}/`;
          for (const m of localMatches) {
            const pivot = m.pattern.indexOf('/./');
            const kept = pivot >= 0 ? posix.relative(cleanRel(m.pattern.slice(0, pivot)), m.root.rel) : m.root.rel;
            const sub = m.root.type === 'dir' ? kept : posix.dirname(kept) === '.' ? '' : posix.dirname(kept);
            groups.push({ source: local, matches: [m], unpack: instr.kind === 'ADD', dest: `${posix.join(destDir, sub)}/` });
          }
        } else {
          groups.push({ source: local, matches: localMatches, unpack: instr.kind === 'ADD' });
        }
      }
      if (instr.heredocs.length > 0) {
        const dir = await tmp('heredoc');
        await writeHeredocs(dir, instr.heredocs);
        const tree = BuildContext.tree(dir);
        for (const h of instr.heredocs) {
          groups.push({ source: tree, matches: await tree.match(posix.basename(`/${h.name}`)), unpack: false });
          keyParts.push(`heredoc ${h.name} ${sha256Key(h.content)}`);
        }
      }
      const globMatches = localMatches.length;
      const multiple = instr.sources.length + instr.heredocs.length > 1 || (instr.sources.some((s) => /[*?[]/.test(s)) && globMatches > 1);
      const components: KeyComponents = {
        parent: state.fsKey,
        op,
        files: sha256Key(keyParts.join('\n')),
        ...(inputs ? { inputs } : {}),
      };
      // Files this COPY wrote last time (same parent layers and instruction) with the same
      // content are hardlinked from that run's snapshot instead of copied again.
      let skip: Map<string, bigint> | undefined;
      let reuseBlob: Digest | undefined;
      const relink = async (upper: string): Promise<void> => {
        if (step.noCache || instr.kind !== 'COPY' || local !== this.context || groups.length !== 1 || instr.parents || instr.heredocs.length > 0 || instr.chown !== undefined) return;
        const prev = this.store.db.latestForStep(step.stepRef, keyOf(components));
        if (!prev?.layer || prev.components.parent !== state.fsKey || prev.components.op !== op) return;
        const prevChain = chainId([...state.layers.map((l) => l.diffId), prev.layer.diffId])!;
        const viewKey = `relink-${process.pid}-${randomBytes(6).toString('hex')}`;
        const viewMounts = await this.store.snapshots.view(viewKey, prevChain).catch(() => undefined);
        if (!viewMounts) return;
        try {
          const m0 = viewMounts[0];
          const prevUpper = viewMounts.length !== 1 || !m0 ? undefined : m0.type === 'bind' ? m0.source : optionValue(m0.options, 'lowerdir')?.split(':')[0];
          if (prevUpper === undefined) return;
          const before = new Map(this.recordFiles(prev.key).map((f) => [f.path, f.digest]));
          const destRoot = posix.resolve('/', dest);
          const chmodFn = instr.chmod !== undefined ? parseChmod(instr.chmod) : undefined;
          const candidates: RelinkCandidate[] = [];
          const now = new Map(files().map((f) => [f.path, f.digest]));
          for (const m of groups[0]!.matches) {
            if (m.root.type !== 'dir') continue;
            // hard-link groups are always copied (the copy links them to one new inode)
            const anchors = hardlinkAnchors(m);
            const linked = new Set<ContextEntry>([...anchors.keys(), ...anchors.values()]);
            for (const e of m.entries) {
              if (e.type !== 'file' || linked.has(e) || now.get(e.rel) === undefined || now.get(e.rel) !== before.get(e.rel)) continue;
              candidates.push({ containerPath: containerPathOf(destRoot, m.root.rel, e.rel), size: e.size, mode: modeOf(e, false, chmodFn), mtimeMs: e.mtimeMs });
            }
          }
          skip = relinkUnchanged(prevUpper, upper, { uid: 0, gid: 0 }, candidates);
          reuseBlob = prev.layer.diffId;
        } finally {
          await this.store.snapshots.remove(viewKey).catch(() => {});
        }
      };
      await this.cachedStep(state, step, components, files, historyText, (vertex) =>
        this.withWritableRoot(state.layers, async (rootfs) => {
          const chown = instr.chown !== undefined ? await resolveChown(rootfs, instr.chown) : undefined;
          const unpackDir = await this.store.tempDir('unpack');
          try {
            for (const g of groups) {
              await copyInto({
                rootfs,
                source: g.source,
                matches: g.matches,
                dest: g.dest ?? dest,
                multiple,
                ...(g.unpack ? { unpackTmp: unpackDir } : {}),
                ...(chown ? { chown } : {}),
                ...(instr.chmod !== undefined ? { chmod: parseChmod(instr.chmod) } : {}),
                ...(skip !== undefined && skip.size > 0 ? { skip } : {}),
              });
            }
          } finally {
            await rm(unpackDir, { recursive: true, force: true });
          }
          return [];
        }, vertex, {
          beforeMount: relink,
          // the linked files' tar entries are the previous layer's (uncompressed blob = its diffID)
          reuse: () => (skip !== undefined && skip.size > 0 && reuseBlob !== undefined ? { blob: reuseBlob, inodes: new Map([...skip].map(([p, ino]) => [p.slice(1), ino])) } : undefined),
        }),
      );
    } finally {
      for (const c of cleanups.reverse()) await c();
    }
  }

  // ---------------------------------------------------------------------------
  // result

  private async finish(final: StageState): Promise<StoredImage> {
    const config = cloneConfig(final.config);
    if (this.opts.labels && Object.keys(this.opts.labels).length > 0) config.config.Labels = { ...(config.config.Labels ?? {}), ...this.opts.labels };
    config.history = fillHistoryTimes(config.history ?? []);
    // BuildKit: the image's time is its newest history entry's, so a fully cached rebuild gives the same image
    config.created = this.opts.sourceDateEpoch !== undefined ? this.createdTime() : (newestTime(config.history) ?? this.createdTime());
    config.rootfs = { type: 'layers', diff_ids: final.layers.map((l) => l.diffId) };
    const vertex = this.newVertex('exporting to image');
    await this.remote?.ensureLayers(final.layers, { all: true });
    const image = await writeImage(this.store.content, { config, layers: final.layers });
    for (const t of this.opts.tags ?? []) await this.store.images.tag(t, image);
    this.vertexDone(vertex, { name: 'exporting to image' });
    return image;
  }
}

/** Cache mounts in use in this process, by id (for sharing=private). */
const cacheUsers = new Map<string, number>();
/** Cache directories whose owner and mode were set up. */
const createdCacheDirs = new Set<string>();
/** sharing=locked: one step at a time per cache id (in this process). */
const cacheLocks = new Map<string, Promise<void>>();

async function lockCacheMount(id: string): Promise<() => void> {
  const prev = cacheLocks.get(id) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const chained = prev.then(() => mine);
  cacheLocks.set(id, chained);
  await prev;
  return () => {
    release();
    if (cacheLocks.get(id) === chained) cacheLocks.delete(id);
  };
}

interface MountPlan {
  keyPart: unknown;
  /** environment variables the mount adds to the step (secret env=, SSH_AUTH_SOCK) */
  envVars?: () => Promise<Record<string, string>>;
  inputKey?: string;
  files?: { digest: string; files: FileDigest[] };
  prepare: (cleanups: (() => Promise<void>)[]) => Promise<ExecMount[]>;
}


function commandArgs(cmd: { form: 'shell' | 'exec'; args: string[] }, shell: readonly string[]): string[] {
  return cmd.form === 'exec' ? [...cmd.args] : [...shell, cmd.args.join(' ')];
}

/**
 * The argv of a RUN, with BuildKit's heredoc rules: a lone heredoc whose body starts
 * with `#!` becomes a script file run from `/dev/pipes/<name>`; a lone heredoc is
 * otherwise the shell script itself; several heredocs (or a heredoc within a longer
 * command) are written back after the command for the shell to read.
 */
function runArgv(instr: Extract<Instruction, { kind: 'RUN' }>, shell: readonly string[]): { argv: string[]; pipe?: { name: string; content: string } } {
  if (instr.cmd.form === 'exec') return { argv: [...instr.cmd.args] };
  let script = instr.cmd.args.join(' ');
  if (instr.heredocs.length > 0) {
    const body = (h: (typeof instr.heredocs)[number]) => (h.chomp ? h.content.replace(/^\t+/gm, '') : h.content);
    const only = /^<<-?(["']?)[^\s"'<>|&;]+\1$/.test(script.trim());
    if (only) {
      const h = instr.heredocs[0];
      if (h.content.startsWith('#!')) return { argv: [...shell, `/dev/pipes/${h.name}`], pipe: { name: h.name, content: body(h) } };
      return { argv: [...shell, body(h)] };
    }
    for (const h of instr.heredocs) script += `\n${h.content}${h.name}`;
  }
  return { argv: [...shell, script] };
}

/** The read-only mount that holds a shebang heredoc's script at /dev/pipes/<name>. */
function heredocPipeMount(pipe: { name: string; content: string }, store: BuildStore): MountPlan {
  return {
    keyPart: { type: 'heredoc', name: pipe.name },
    prepare: async (cleanups) => {
      const dir = await store.tempDir('pipes');
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      const file = join(dir, pipe.name);
      await writeFile(file, pipe.content, { mode: 0o755 });
      return [{ type: 'bind', source: file, target: `/dev/pipes/${pipe.name}`, readonly: true }];
    },
  };
}

function displayInstruction(i: Instruction): string {
  return i.raw.replace(/\s+/g, ' ').trim();
}

/** Expands EXPOSE words (`80`, `80/udp`, `8000-8002/tcp`) to Docker's `port/proto` keys. */
function expandPorts(ports: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of ports) {
    const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(p);
    if (!m) throw new BuildError(`invalid containerPort: ${p}`);
    const proto = (m[3] ?? 'tcp').toLowerCase();
    const from = Number(m[1]);
    const to = m[2] !== undefined ? Number(m[2]) : from;
    if (to < from) throw new BuildError(`invalid range specified for container port: ${p}`);
    for (let n = from; n <= to; n++) out.push(`${n}/${proto}`);
  }
  return out;
}

/** A step's per-file digests, or a function computing them when first needed. */
type Files = readonly FileDigest[] | (() => readonly FileDigest[]);

/** Resolves `--chown=user[:group]` against the destination root's passwd/group files. */
async function resolveChown(rootfs: string, spec: string): Promise<{ uid: number; gid: number }> {
  const [u, g] = spec.split(':', 2);
  const user = await resolveUser(rootfs, u);
  if (g === undefined || g === '') return { uid: user.uid, gid: /^\d+$/.test(u) ? user.uid : user.gid };
  if (/^\d+$/.test(g)) return { uid: user.uid, gid: Number(g) };
  const grp = await resolveUser(rootfs, `${u}:${g}`);
  return { uid: user.uid, gid: grp.gid };
}

function assertNever(x: never): never {
  throw new BuildError(`unhandled instruction ${JSON.stringify(x)}`, 'INTERNAL');
}

/** The value of `name=` in mount options (`upperdir`, `lowerdir`). */
/** Whether overlay `volatile` works here: undefined until the first writable step mount tries it. */
let volatileMounts: boolean | undefined;

function optionValue(options: readonly string[], name: string): string | undefined {
  const o = options.find((x) => x.startsWith(`${name}=`));
  return o === undefined ? undefined : o.slice(name.length + 1);
}
