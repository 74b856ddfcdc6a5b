import { readFile, stat, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { ProgressEvent } from '@tsbuild/solver';
import { UsageError } from '../errors.js';
import { JsonRenderer } from '../progress/json.js';
import { PlainRenderer } from '../progress/plain.js';
import { TtyRenderer } from '../progress/tty.js';
import { openStore } from './store.js';

export interface BuildFlags {
  tag: string[];
  file?: string;
  buildArg: string[];
  target?: string;
  platform?: string;
  cache: boolean;
  cacheFilter?: string[];
  noCacheFilter?: string[];
  label: string[];
  progress: 'auto' | 'tty' | 'plain' | 'json' | 'quiet';
  output: string[];
  secret: string[];
  iidfile?: string;
  metadataFile?: string;
  quiet?: boolean;
  network?: 'default' | 'none' | 'host';
  check?: boolean;
  isolation: 'auto' | 'runc' | 'unshare';
  jobs?: string;
  ssh?: string[];
  buildContext?: string[];
  explain?: boolean;
  pull?: boolean;
  push?: boolean;
  cacheTo?: string[];
  cacheFrom?: string[];
  insecureRegistry?: string[];
  /** --progress was given on the command line (not the default) */
  progressExplicit?: boolean;
}

interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

export interface OutputSpec {
  type: 'image' | 'oci' | 'docker' | 'tar' | 'local';
  dest?: string;
  name?: string;
  compression?: 'gzip' | 'zstd' | 'uncompressed';
  compressionLevel?: number;
  push?: boolean;
  /** clamp file mtimes in every layer to SOURCE_DATE_EPOCH at export */
  rewriteTimestamp?: boolean;
}

/** Parses `KEY=VALUE` pairs; a bare `KEY` takes its value from the environment (as buildx does). */
export function parseKeyValues(items: readonly string[], what: string, fromEnv: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (const it of items) {
    const i = it.indexOf('=');
    if (i === 0) throw new UsageError(`invalid ${what} ${JSON.stringify(it)}: expected KEY=VALUE`);
    if (i < 0) {
      if (!fromEnv) throw new UsageError(`invalid ${what} ${JSON.stringify(it)}: expected KEY=VALUE`);
      const v = process.env[it];
      if (v !== undefined) out[it] = v;
      continue;
    }
    out[it.slice(0, i)] = it.slice(i + 1);
  }
  return out;
}

/** Parses a CSV `key=value,...` spec (as buildx's --output and --secret). */
export function parseCsv(spec: string, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of spec.split(',')) {
    if (part === '') continue;
    const i = part.indexOf('=');
    if (i <= 0) throw new UsageError(`invalid ${what} ${JSON.stringify(spec)}: expected key=value pairs separated by commas`);
    out[part.slice(0, i).trim()] = part.slice(i + 1);
  }
  return out;
}

export function parseOutput(spec: string): OutputSpec {
  const kv = spec.includes('=') ? parseCsv(spec, '--output') : { type: 'local', dest: spec };
  const type = kv.type ?? 'local';
  if (!['image', 'oci', 'docker', 'tar', 'local', 'registry'].includes(type)) throw new UsageError(`unknown output type ${JSON.stringify(type)}: expected image, registry, oci, docker, tar or local`);
  // type=registry is type=image,push=true (as buildx)
  const out: OutputSpec = { type: type === 'registry' ? 'image' : (type as OutputSpec['type']) };
  if (kv.push !== undefined) {
    if (kv.push !== 'true' && kv.push !== 'false') throw new UsageError(`invalid push ${JSON.stringify(kv.push)}: expected true or false`);
    if (out.type !== 'image') throw new UsageError(`--output type=${type} cannot push: use type=image,push=true or type=registry`);
  }
  if (type === 'registry' || kv.push === 'true') out.push = true;
  if (kv.dest !== undefined) out.dest = kv.dest;
  if (kv.name !== undefined) out.name = kv.name;
  if (kv.compression !== undefined) {
    if (!['gzip', 'zstd', 'uncompressed'].includes(kv.compression)) throw new UsageError(`invalid compression ${JSON.stringify(kv.compression)}: expected gzip, zstd or uncompressed`);
    out.compression = kv.compression as OutputSpec['compression'];
  }
  if (kv['compression-level'] !== undefined) {
    const n = Number(kv['compression-level']);
    if (!Number.isInteger(n) || n < 0 || n > 22) throw new UsageError(`invalid compression-level ${JSON.stringify(kv['compression-level'])}`);
    out.compressionLevel = n;
  }
  if (kv['rewrite-timestamp'] !== undefined) {
    if (kv['rewrite-timestamp'] !== 'true' && kv['rewrite-timestamp'] !== 'false') throw new UsageError(`invalid rewrite-timestamp ${JSON.stringify(kv['rewrite-timestamp'])}: expected true or false`);
    out.rewriteTimestamp = kv['rewrite-timestamp'] === 'true';
  }
  const known = new Set(['type', 'dest', 'name', 'compression', 'compression-level', 'rewrite-timestamp', 'push']);
  for (const k of Object.keys(kv)) if (!known.has(k)) throw new UsageError(`unknown --output attribute ${JSON.stringify(k)}: expected type, dest, name, push, compression, compression-level or rewrite-timestamp`);
  if ((out.type === 'oci' || out.type === 'docker' || out.type === 'tar' || out.type === 'local') && out.dest === undefined) {
    throw new UsageError(`--output type=${out.type} needs dest=PATH`);
  }
  return out;
}

/** Parses `--ssh default|ID[=SOCKET,...]` (buildx's syntax); the default socket is $SSH_AUTH_SOCK. */
export function parseSsh(specs: readonly string[]): { id: string; paths: string[] }[] {
  return specs.map((spec) => {
    const i = spec.indexOf('=');
    const id = i < 0 ? spec : spec.slice(0, i);
    if (!/^[A-Za-z0-9_.-]+$/.test(id)) throw new UsageError(`invalid --ssh ${JSON.stringify(spec)}: expected default or ID[=SOCKET]`);
    const paths = i < 0 ? [] : spec.slice(i + 1).split(',').filter(Boolean);
    if (paths.length === 0) {
      const sock = process.env.SSH_AUTH_SOCK;
      if (!sock) throw new UsageError(`--ssh ${spec}: no socket given and SSH_AUTH_SOCK is not set`);
      paths.push(sock);
    }
    return { id, paths: paths.map((p) => resolve(p)) };
  });
}

function clamp(n: number): string {
  return n.toFixed(1);
}

export async function buildCommand(contextArg: string, flags: BuildFlags, io: Io): Promise<number> {
  const buildArgs = parseKeyValues(flags.buildArg, '--build-arg', true);
  const labels = parseKeyValues(flags.label, '--label', false);
  const outputs = flags.output.map(parseOutput);
  if (outputs.filter((o) => o.type === 'image').length > 1) throw new UsageError('conflicting --output: type=image given more than once');
  if (flags.quiet && flags.progressExplicit && flags.progress !== 'quiet') throw new UsageError(`conflicting options: -q/--quiet and --progress=${flags.progress}`);
  if (contextArg === '-' && flags.file === '-') throw new UsageError('conflicting options: the context and the Dockerfile (-f -) cannot both come from stdin');
  if (flags.platform !== undefined) {
    const host = `linux/${process.arch === 'x64' ? 'amd64' : process.arch}`;
    if (flags.platform.split(',').some((p) => p.trim() !== host)) throw new UsageError(`--platform ${flags.platform}: only the host platform (${host}) can be built; cross-platform builds are not supported yet`);
  }
  const secrets = flags.secret.map((s): { id: string; src?: string; env?: string } => {
    const kv = parseCsv(s, '--secret');
    const id = kv.id;
    if (!id) throw new UsageError(`invalid --secret ${JSON.stringify(s)}: id=ID is required`);
    const src = kv.src ?? kv.source;
    if (src !== undefined) return { id, src: resolve(src) };
    if (kv.env !== undefined) return { id, env: kv.env };
    return { id, env: id };
  });
  const ssh = parseSsh(flags.ssh ?? []);
  const buildContexts = parseKeyValues(flags.buildContext ?? [], '--build-context', false);
  for (const [k, v] of Object.entries(buildContexts)) {
    if (!/^(docker-image|oci-layout):\/\//.test(v) && !/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) buildContexts[k] = resolve(v);
  }
  const noCacheFilter = flags.noCacheFilter ?? flags.cacheFilter ?? [];
  const jobs = flags.jobs !== undefined ? Number(flags.jobs) : undefined;
  if (jobs !== undefined && (!Number.isInteger(jobs) || jobs < 1)) throw new UsageError(`invalid --jobs ${JSON.stringify(flags.jobs)}: expected a positive whole number`);
  const epochText = process.env.SOURCE_DATE_EPOCH ?? buildArgs.SOURCE_DATE_EPOCH;
  const sourceDateEpoch = epochText !== undefined && epochText !== '' ? Number(epochText) : undefined;
  if (sourceDateEpoch !== undefined && (!Number.isInteger(sourceDateEpoch) || sourceDateEpoch < 0)) throw new UsageError(`invalid SOURCE_DATE_EPOCH ${JSON.stringify(epochText)}: expected whole seconds since 1970`);
  // layers at least this big are stored virtual (regenerated from their snapshot); "off" always writes blobs
  const virtualText = process.env.TSBUILD_VIRTUAL_LAYER_MIN_BYTES;
  const virtualLayerMinBytes = virtualText === undefined || virtualText === '' ? undefined : virtualText === 'off' ? Infinity : Number(virtualText);
  if (virtualLayerMinBytes !== undefined && !(virtualLayerMinBytes === Infinity || (Number.isSafeInteger(virtualLayerMinBytes) && virtualLayerMinBytes >= 0))) {
    throw new UsageError(`invalid TSBUILD_VIRTUAL_LAYER_MIN_BYTES ${JSON.stringify(virtualText)}: expected a whole number of bytes or "off"`);
  }
  const rewrite = outputs.some((o) => o.rewriteTimestamp === true);
  if (rewrite && sourceDateEpoch === undefined) throw new UsageError('--output rewrite-timestamp=true needs SOURCE_DATE_EPOCH (environment or --build-arg)');

  let dockerfileText: string | undefined;
  if (flags.file === '-') dockerfileText = await readStdin();
  const dockerfile = flags.file !== undefined && flags.file !== '-' ? resolve(flags.file) : undefined;

  if (flags.check) {
    if (contextArg === '-' || isGitUrlLazy(contextArg)) throw new UsageError('--check reads a local Dockerfile: give a context directory or -f FILE');
    const { lintFile } = await import('./parse.js');
    return lintFile(dockerfile ?? resolve(contextArg, 'Dockerfile'), dockerfileText, buildArgs, 'text', io);
  }

  // secret values never reach the terminal, even when a step prints them
  const secretValues: string[] = [];
  for (const s of secrets) {
    const v = s.src !== undefined ? await readFile(s.src, 'utf8').catch(() => undefined) : process.env[s.env ?? s.id];
    if (v !== undefined && v.trim().length >= 3) secretValues.push(v.trim());
  }
  const scrub = (text: string): string => {
    let t = text;
    for (const v of secretValues) t = t.split(v).join('****');
    return t;
  };

  const mode = flags.quiet ? 'quiet' : flags.progress === 'auto' ? (process.stderr.isTTY ? 'tty' : 'plain') : flags.progress;
  let handle: (e: ProgressEvent) => void = () => {};
  let tty: TtyRenderer | undefined;
  if (mode === 'plain') {
    const r = new PlainRenderer(io.stderr, scrub);
    handle = (e) => r.handle(e);
  } else if (mode === 'json') {
    const r = new JsonRenderer(io.stderr, scrub);
    handle = (e) => r.handle(e);
  } else if (mode === 'tty') {
    tty = new TtyRenderer(io.stderr, () => process.stderr.columns || Number(process.env.COLUMNS) || 100, scrub);
    const r = tty;
    handle = (e) => r.handle(e);
  }

  const imageOutput = outputs.find((o) => o.type === 'image');
  const tags = [...flags.tag, ...(imageOutput?.name ? imageOutput.name.split(',') : [])];
  // registries: --push / push=true push every name; --cache-to/--cache-from; --pull
  const { parseCacheFrom, parseCacheTo, registryAccess } = await import('./registry.js');
  const cacheTo = (flags.cacheTo ?? []).map(parseCacheTo);
  const cacheFrom = (flags.cacheFrom ?? []).map(parseCacheFrom);
  const access = registryAccess(flags.insecureRegistry);
  const push = flags.push === true || imageOutput?.push === true;
  if (push && tags.length === 0) throw new UsageError('--push needs a name to push to: give -t REGISTRY/REPO[:TAG] (or --output type=registry,name=...)');
  const compressed = outputs.find((o) => o.compression !== undefined || o.compressionLevel !== undefined);

  // the context: a directory, a tar (or a Dockerfile) on stdin, or a git URL
  let contextDir = contextArg;
  let cleanupContext = async (): Promise<void> => {};
  if (contextArg === '-' || isGitUrlLazy(contextArg)) {
    const { gitContext, stdinContext } = await import('./context.js');
    const prepared = contextArg === '-' ? await stdinContext(process.stdin as AsyncIterable<Buffer>) : await gitContext(contextArg);
    contextDir = prepared.dir;
    cleanupContext = prepared.cleanup;
    if (prepared.dockerfileText !== undefined && dockerfile === undefined) dockerfileText = prepared.dockerfileText;
  }

  const { build } = await import('@tsbuild/solver');
  const store = await openStore();
  const ac = new AbortController();
  const onSignal = (): void => ac.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const started = Date.now();
  let exportSeq = 0;
  /** runs one export as its own vertex, reporting bytes written and throughput */
  const exportStep = async (name: string, fn: () => Promise<string | undefined>): Promise<void> => {
    const vertex = `export-${++exportSeq}`;
    const t0 = Date.now();
    handle({ type: 'vertex', vertex, name, started: t0 });
    try {
      const file = await fn();
      if (file !== undefined) {
        const size = (await stat(file)).size;
        handle({ type: 'status', vertex, id: `writing ${file}`, current: size, total: size, started: t0, completed: Date.now() });
      }
      handle({ type: 'vertex', vertex, name, completed: Date.now() });
    } catch (err) {
      handle({ type: 'vertex', vertex, name, completed: Date.now(), error: err instanceof Error ? err.message : String(err) });
      throw err;
    }
  };
  try {
    const result = await build(store, {
      context: contextDir,
      ...(dockerfile !== undefined ? { dockerfile } : {}),
      ...(dockerfileText !== undefined ? { dockerfileText } : {}),
      tags,
      ...(flags.target !== undefined ? { target: flags.target } : {}),
      buildArgs,
      labels,
      noCache: flags.cache === false,
      noCacheFilter,
      isolation: flags.isolation,
      ...(flags.network !== undefined ? { network: flags.network } : {}),
      ...(compressed?.compression !== undefined ? { compression: compressed.compression } : {}),
      ...(compressed?.compressionLevel !== undefined ? { compressionLevel: compressed.compressionLevel } : {}),
      ...(sourceDateEpoch !== undefined ? { sourceDateEpoch } : {}),
      ...(virtualLayerMinBytes !== undefined ? { virtualLayerMinBytes } : {}),
      secrets,
      ...(ssh.length > 0 ? { ssh } : {}),
      ...(Object.keys(buildContexts).length > 0 ? { buildContexts } : {}),
      ...(jobs !== undefined ? { jobs } : {}),
      ...(flags.pull ? { pull: true } : {}),
      ...(Object.keys(access).length > 0 ? { registry: access } : {}),
      ...(cacheFrom.length > 0 ? { cacheFrom } : {}),
      ...(cacheTo.length > 0 ? { cacheTo } : {}),
      signal: ac.signal,
      onProgress: handle,
    });
    let image = result.image;
    if (rewrite) {
      const { rewriteTimestamps } = await import('@tsbuild/solver');
      await exportStep(`rewriting timestamps to SOURCE_DATE_EPOCH=${sourceDateEpoch}`, async () => {
        image = (await rewriteTimestamps(store, image, sourceDateEpoch!, { signal: ac.signal })).image;
        if (image !== result.image) for (const t of tags) await store.images.tag(t, image);
        return undefined;
      });
    }
    const { saveDockerArchive, saveOciArchive } = await import('@tsbuild/snapshotter');
    for (const o of outputs) {
      if (o.type === 'oci') await exportStep(`exporting to oci archive ${o.dest}`, async () => (await saveOciArchive(store.content, image, tags, o.dest!), o.dest));
      else if (o.type === 'docker') await exportStep(`exporting to docker archive ${o.dest}`, async () => (await saveDockerArchive(store.content, [{ image, tags }], o.dest!), o.dest));
      else if (o.type === 'tar' || o.type === 'local') {
        const { exportFilesystem } = await import('./export-fs.js');
        await exportStep(`exporting filesystem to ${o.type} ${o.dest}`, async () => (await exportFilesystem(store, image, o.type as 'tar' | 'local', o.dest!), o.type === 'tar' ? o.dest : undefined));
      }
    }
    let pushed: string | undefined;
    if (push) {
      const { pushNames } = await import('./registry.js');
      pushed = await pushNames(store, image, tags, access, handle);
    }
    tty?.stop(summaryLine(result.steps, started));
    const imageId = image.configDigest;
    if (flags.iidfile) await writeFile(flags.iidfile, imageId);
    if (flags.metadataFile) {
      const last = store.db.lastBuild(dockerfile ?? (dockerfileText !== undefined && flags.file === '-' ? undefined : resolve(contextDir, 'Dockerfile')));
      const meta: Record<string, unknown> = {
        'containerimage.digest': image.manifestDigest,
        'containerimage.config.digest': imageId,
        'containerimage.descriptor': { mediaType: image.manifest.mediaType, digest: image.manifestDigest, size: image.manifestSize },
        'buildx.build.ref': `tsbuild/local/${last?.id ?? 'unknown'}`,
      };
      if (tags.length > 0) meta['image.name'] = tags.join(',');
      if (pushed !== undefined) meta['containerimage.digest'] = pushed;
      if (result.cacheExports !== undefined) meta['cache.exports'] = result.cacheExports.map((c) => ({ digest: c.descriptor.digest, records: c.records, layers: c.layers }));
      await writeFile(flags.metadataFile, `${JSON.stringify(meta, null, 2)}\n`);
    }
    if (mode === 'quiet') io.stdout(`${imageId}\n`);
    else {
      if (mode !== 'tty') io.stderr(`\n${summaryLine(result.steps, started)}\n`);
      io.stderr(`writing image ${imageId} done\n`);
      for (const t of tags) io.stderr(`naming to ${t} done\n`);
      if (pushed !== undefined) for (const t of tags) io.stderr(`pushed ${t}@${pushed}\n`);
    }
    if (flags.explain) {
      const { formatSteps } = await import('./why.js');
      io.stdout(formatSteps(result.steps));
    }
    return 0;
  } finally {
    tty?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await store.close();
    await cleanupContext();
  }
}

/** `built in 3.2s: 7 steps, 5 cached` */
function summaryLine(steps: readonly { cached: boolean }[], started: number): string {
  const cached = steps.filter((s) => s.cached).length;
  return `built in ${clamp((Date.now() - started) / 1000)}s: ${steps.length} steps, ${cached} cached`;
}

function isGitUrlLazy(s: string): boolean {
  return /^(git:\/\/|git@|ssh:\/\/)/.test(s) || /^(https?|file):\/\/[^#]*\.git(#.*)?$/.test(s) || /^https?:\/\/(github\.com|gitlab\.com)\/[^/]+\/[^/#]+(#.*)?$/.test(s);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
