/** `tsbuild pull`/`push`, the push step of `build --push`, and the `--cache-to`/`--cache-from` spec parsers. */
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { BuildStore, CacheExportSpec, CacheImportSpec, ProgressEvent, RegistryAccess } from '@tsbuild/solver';
import type { StoredImage } from '@tsbuild/snapshotter';
import { UsageError } from '../errors.js';
import { PlainRenderer } from '../progress/plain.js';
import { parseCsv } from './build.js';
import { openStore } from './store.js';

interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

function parseMode(kv: Record<string, string>, spec: string): 'min' | 'max' | undefined {
  const m = kv.mode;
  if (m === undefined) return undefined;
  if (m !== 'min' && m !== 'max') throw new UsageError(`invalid --cache-to ${JSON.stringify(spec)}: expected mode=min or mode=max, found mode=${m}`);
  return m;
}

function checkKeys(kv: Record<string, string>, known: readonly string[], flag: string, spec: string): void {
  for (const k of Object.keys(kv)) {
    if (!known.includes(k)) throw new UsageError(`invalid ${flag} ${JSON.stringify(spec)}: unknown attribute ${JSON.stringify(k)} (expected ${known.join(', ')})`);
  }
}

/** `--cache-to type=registry,ref=REF[,mode=min|max]` or `type=local,dest=DIR[,tag=T][,mode=…]` (buildx syntax). */
export function parseCacheTo(spec: string): CacheExportSpec {
  const kv = parseCsv(spec, '--cache-to');
  const mode = parseMode(kv, spec);
  if (kv.type === 'registry') {
    checkKeys(kv, ['type', 'ref', 'mode'], '--cache-to', spec);
    if (!kv.ref) throw new UsageError(`invalid --cache-to ${JSON.stringify(spec)}: type=registry needs ref=REGISTRY/REPO[:TAG]`);
    return { type: 'registry', ref: kv.ref, ...(mode ? { mode } : {}) };
  }
  if (kv.type === 'local') {
    checkKeys(kv, ['type', 'dest', 'tag', 'mode'], '--cache-to', spec);
    if (!kv.dest) throw new UsageError(`invalid --cache-to ${JSON.stringify(spec)}: type=local needs dest=DIR`);
    return { type: 'local', dest: resolve(kv.dest), ...(kv.tag ? { tag: kv.tag } : {}), ...(mode ? { mode } : {}) };
  }
  throw new UsageError(`invalid --cache-to ${JSON.stringify(spec)}: expected type=registry or type=local, found ${kv.type === undefined ? 'no type' : `type=${kv.type}`}`);
}

/** `--cache-from type=registry,ref=REF`, a bare `REF`, or `type=local,src=DIR[,tag=T]`. */
export function parseCacheFrom(spec: string): CacheImportSpec {
  if (!spec.includes('=')) {
    if (spec === '') throw new UsageError('invalid --cache-from "": expected a reference or type=...');
    return { type: 'registry', ref: spec };
  }
  const kv = parseCsv(spec, '--cache-from');
  if (kv.type === 'registry') {
    checkKeys(kv, ['type', 'ref'], '--cache-from', spec);
    if (!kv.ref) throw new UsageError(`invalid --cache-from ${JSON.stringify(spec)}: type=registry needs ref=REGISTRY/REPO[:TAG]`);
    return { type: 'registry', ref: kv.ref };
  }
  if (kv.type === 'local') {
    checkKeys(kv, ['type', 'src', 'tag'], '--cache-from', spec);
    if (!kv.src) throw new UsageError(`invalid --cache-from ${JSON.stringify(spec)}: type=local needs src=DIR`);
    return { type: 'local', src: resolve(kv.src), ...(kv.tag ? { tag: kv.tag } : {}) };
  }
  throw new UsageError(`invalid --cache-from ${JSON.stringify(spec)}: expected type=registry or type=local, found ${kv.type === undefined ? 'no type' : `type=${kv.type}`}`);
}

/** `--insecure-registry` values, checked to be `host[:port]`. */
export function registryAccess(insecure: readonly string[] | undefined): RegistryAccess {
  const list = insecure ?? [];
  for (const h of list) {
    if (!/^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:]+\](:\d+)?$/.test(h)) throw new UsageError(`invalid --insecure-registry ${JSON.stringify(h)}: expected host[:port]`);
  }
  return list.length > 0 ? { insecureRegistries: [...list] } : {};
}

/**
 * Pushes `image` to each name (each a `registry/repo:tag` reference), each as a vertex
 * with transfer status events. Returns the pushed manifest digest.
 */
export async function pushNames(store: BuildStore, image: StoredImage, names: readonly string[], access: RegistryAccess, handle: (e: ProgressEvent) => void): Promise<string> {
  const { pushImage } = await import('@tsbuild/solver');
  let digest: string = image.manifestDigest;
  for (const [i, name] of names.entries()) {
    const vertex = `push-${i + 1}`;
    const label = `pushing ${name}`;
    handle({ type: 'vertex', vertex, name: label, started: Date.now() });
    try {
      digest = (await pushImage(store, image, name, { access, emit: handle, vertex })).digest;
    } catch (err) {
      handle({ type: 'vertex', vertex, name: label, completed: Date.now(), error: (err as Error).message });
      throw err;
    }
    handle({ type: 'status', vertex, id: `pushed manifest ${digest}`, current: image.manifestSize, total: image.manifestSize });
    handle({ type: 'vertex', vertex, name: label, completed: Date.now() });
  }
  return digest;
}

/** `tsbuild pull NAME`: resolves NAME at its registry (always) and stores the image under its canonical name. */
export async function pullCommand(name: string, opts: { insecureRegistry?: string[]; quiet?: boolean }, io: Io): Promise<void> {
  const access = registryAccess(opts.insecureRegistry);
  const { pullImage } = await import('@tsbuild/solver');
  const store = await openStore();
  try {
    const r = new PlainRenderer(io.stderr);
    const handle = opts.quiet ? () => {} : (e: ProgressEvent) => r.handle(e);
    const vertex = 'pull-1';
    handle({ type: 'vertex', vertex, name: `pulling ${name}`, started: Date.now() });
    let image: StoredImage;
    try {
      image = await pullImage(store, name, { access, force: true, emit: handle, vertex });
    } catch (err) {
      handle({ type: 'vertex', vertex, name: `pulling ${name}`, completed: Date.now(), error: (err as Error).message });
      throw err;
    }
    handle({ type: 'vertex', vertex, name: `pulling ${name}`, completed: Date.now() });
    io.stdout(`${image.manifestDigest}\n`);
  } finally {
    await store.close();
  }
}

/**
 * `tsbuild push NAME [DEST]`: pushes the local image NAME to the registry its name
 * (or DEST) says; prints the pushed digest, and writes it to `--metadata-file`.
 */
export async function pushCommand(name: string, dest: string | undefined, opts: { insecureRegistry?: string[]; metadataFile?: string; quiet?: boolean }, io: Io): Promise<void> {
  const access = registryAccess(opts.insecureRegistry);
  const store = await openStore();
  try {
    const image = await store.images.resolve(name);
    if (!image) throw new UsageError(`no such image: ${name}`);
    const r = new PlainRenderer(io.stderr);
    const digest = await pushNames(store, image, [dest ?? name], access, opts.quiet ? () => {} : (e) => r.handle(e));
    if (opts.metadataFile) await writePushMetadata(opts.metadataFile, image, digest, [dest ?? name]);
    io.stdout(`${digest}\n`);
  } finally {
    await store.close();
  }
}

/** buildx-style metadata for a pushed image: `containerimage.digest`, descriptor, names. */
export async function writePushMetadata(file: string, image: StoredImage, digest: string, names: readonly string[], extra: Record<string, unknown> = {}): Promise<void> {
  const meta: Record<string, unknown> = {
    'containerimage.digest': digest,
    'containerimage.config.digest': image.configDigest,
    'containerimage.descriptor': { mediaType: image.manifest.mediaType, digest, size: image.manifestSize },
    'image.name': names.join(','),
    ...extra,
  };
  await writeFile(file, `${JSON.stringify(meta, null, 2)}\n`);
}
