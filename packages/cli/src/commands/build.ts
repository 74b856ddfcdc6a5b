import { readFile, writeFile } from 'node:fs/promises';
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
  if (!['image', 'oci', 'docker', 'tar', 'local', 'registry'].includes(type)) throw new UsageError(`unknown output type ${JSON.stringify(type)}: expected image, oci, docker, tar or local`);
  if (type === 'registry' || kv.push === 'true') throw new UsageError('pushing to a registry is not supported yet (see README: not done yet)');
  const out: OutputSpec = { type: type as OutputSpec['type'] };
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
  if ((out.type === 'oci' || out.type === 'docker' || out.type === 'tar' || out.type === 'local') && out.dest === undefined) {
    throw new UsageError(`--output type=${out.type} needs dest=PATH`);
  }
  return out;
}

export async function buildCommand(contextArg: string, flags: BuildFlags, io: Io): Promise<number> {
  const buildArgs = parseKeyValues(flags.buildArg, '--build-arg', true);
  const labels = parseKeyValues(flags.label, '--label', false);
  const outputs = flags.output.map(parseOutput);
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
  const noCacheFilter = flags.noCacheFilter ?? flags.cacheFilter ?? [];
  const jobs = flags.jobs !== undefined ? Number(flags.jobs) : undefined;
  if (jobs !== undefined && (!Number.isInteger(jobs) || jobs < 1)) throw new UsageError(`invalid --jobs ${JSON.stringify(flags.jobs)}: expected a positive whole number`);

  let dockerfileText: string | undefined;
  if (flags.file === '-') dockerfileText = await readStdin();
  const dockerfile = flags.file !== undefined && flags.file !== '-' ? resolve(flags.file) : undefined;

  if (flags.check) {
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
    tty = new TtyRenderer(io.stderr, () => process.stderr.columns ?? 100, scrub);
    const r = tty;
    handle = (e) => r.handle(e);
  }

  const imageOutput = outputs.find((o) => o.type === 'image');
  const tags = [...flags.tag, ...(imageOutput?.name ? imageOutput.name.split(',') : [])];
  const compressed = outputs.find((o) => o.compression !== undefined || o.compressionLevel !== undefined);

  const { build } = await import('@tsbuild/solver');
  const store = await openStore();
  const ac = new AbortController();
  const onSignal = (): void => ac.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const started = Date.now();
  try {
    const result = await build(store, {
      context: contextArg,
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
      ...(process.env.SOURCE_DATE_EPOCH ? { sourceDateEpoch: Number(process.env.SOURCE_DATE_EPOCH) } : {}),
      secrets,
      ...(jobs !== undefined ? { jobs } : {}),
      signal: ac.signal,
      onProgress: handle,
    });
    const { saveDockerArchive, saveOciArchive } = await import('@tsbuild/snapshotter');
    for (const o of outputs) {
      if (o.type === 'oci') await saveOciArchive(store.content, result.image, tags, o.dest!);
      else if (o.type === 'docker') await saveDockerArchive(store.content, [{ image: result.image, tags }], o.dest!);
      else if (o.type === 'tar' || o.type === 'local') {
        const { exportFilesystem } = await import('./export-fs.js');
        await exportFilesystem(store, result.image, o.type, o.dest!);
      }
    }
    tty?.stop();
    const imageId = result.image.configDigest;
    if (flags.iidfile) await writeFile(flags.iidfile, imageId);
    if (flags.metadataFile) {
      const meta: Record<string, unknown> = {
        'containerimage.digest': result.digest,
        'containerimage.config.digest': imageId,
        'containerimage.descriptor': { mediaType: result.image.manifest.mediaType, digest: result.digest, size: result.image.manifestSize },
      };
      if (tags.length > 0) meta['image.name'] = tags.join(',');
      await writeFile(flags.metadataFile, `${JSON.stringify(meta, null, 2)}\n`);
    }
    if (mode === 'quiet') io.stdout(`${imageId}\n`);
    else {
      const cached = result.steps.filter((s) => s.cached).length;
      io.stderr(`\nwriting image ${imageId} done\n`);
      for (const t of tags) io.stderr(`naming to ${t} done\n`);
      io.stderr(`built in ${((Date.now() - started) / 1000).toFixed(1)}s: ${result.steps.length} steps, ${cached} cached\n`);
    }
    return 0;
  } finally {
    tty?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await store.close();
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
