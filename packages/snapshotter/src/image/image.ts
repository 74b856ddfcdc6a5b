import { ContentStore } from '../content/content-store.js';
import { isDigest, sha256, type Digest } from '../content/digest.js';
import {
  ContentTooLargeError,
  DigestMismatchError,
  InvalidManifestError,
  NoMatchingPlatformError,
  SizeMismatchError,
} from '../errors.js';
import { canonicalJson } from './canonical-json.js';
import { formatPlatform, hostPlatform, platformRank } from './platform.js';
import {
  CONFIG_TYPES,
  INDEX_TYPES,
  LAYER_TYPES,
  MANIFEST_TYPES,
  MAX_JSON_SIZE,
  MediaTypes,
  type Descriptor,
  type ImageConfigFile,
  type LayerRef,
  type Manifest,
  type Platform,
  type StoredImage,
} from './types.js';

/** Layer types that may legitimately be absent locally (fetched from `urls`). */
const FOREIGN_LAYER_TYPES: ReadonlySet<string> = new Set([
  MediaTypes.dockerForeignLayerGzip,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
]);
const MAX_INDEX_DEPTH = 4;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads a small JSON blob: refuses it above {@link MAX_JSON_SIZE} before reading,
 * re-hashes the bytes, checks the expected size, and parses.
 */
export async function readJsonBlob(store: ContentStore, digest: Digest, expectSize?: number): Promise<{ bytes: Buffer; value: unknown }> {
  const info = await store.info(digest);
  if (expectSize !== undefined && info.size !== expectSize) throw new SizeMismatchError(expectSize, info.size);
  if (info.size > MAX_JSON_SIZE) throw new ContentTooLargeError(`json blob ${digest}`, MAX_JSON_SIZE, info.size);
  const bytes = await store.readBlob(digest);
  const actual = sha256(bytes);
  if (actual !== digest) throw new DigestMismatchError(digest, actual);
  try {
    return { bytes, value: JSON.parse(bytes.toString('utf8')) as unknown };
  } catch (err) {
    throw new InvalidManifestError(digest, 'expected valid JSON', { cause: err });
  }
}

/** Validates a descriptor's shape; `where` names it in errors. */
export function parseDescriptor(owner: string, where: string, v: unknown): Descriptor {
  if (!isObject(v)) throw new InvalidManifestError(owner, `${where}: expected a descriptor object`);
  const { mediaType, digest, size, annotations, platform } = v;
  if (typeof mediaType !== 'string' || mediaType.length === 0) throw new InvalidManifestError(owner, `${where}: expected a mediaType string`);
  if (!isDigest(digest)) throw new InvalidManifestError(owner, `${where}: expected a sha256 digest, found ${JSON.stringify(digest)}`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new InvalidManifestError(owner, `${where}: expected a non-negative integer size, found ${JSON.stringify(size)}`);
  const d: Descriptor = { mediaType, digest, size };
  if (annotations !== undefined) {
    if (!isObject(annotations) || Object.values(annotations).some((x) => typeof x !== 'string')) {
      throw new InvalidManifestError(owner, `${where}: expected annotations to map strings to strings`);
    }
    d.annotations = annotations as Record<string, string>;
  }
  if (platform !== undefined) {
    if (!isObject(platform) || typeof platform.os !== 'string' || typeof platform.architecture !== 'string') {
      throw new InvalidManifestError(owner, `${where}: expected platform with os and architecture strings`);
    }
    d.platform = platform as unknown as Platform;
  }
  return d;
}

/**
 * Decides whether a document is a manifest or an index from the descriptor's media
 * type and the body's own `mediaType` (then `fallbackType`, e.g. the Content-Type a
 * registry served); refuses ambiguous documents (CVE-2021-41190).
 */
export function classify(digest: Digest, body: unknown, descriptorType: string | undefined, fallbackType?: string): { kind: 'manifest' | 'index'; mediaType: string; body: Json } {
  if (!isObject(body)) throw new InvalidManifestError(digest, 'expected a JSON object');
  if (body.schemaVersion !== 2) throw new InvalidManifestError(digest, `expected schemaVersion 2, found ${JSON.stringify(body.schemaVersion)}`);
  const hasManifests = body.manifests !== undefined;
  if (hasManifests && (body.layers !== undefined || body.config !== undefined)) {
    throw new InvalidManifestError(digest, 'ambiguous/malicious manifest: has both "manifests" and "layers"/"config"');
  }
  const bodyType = body.mediaType;
  if (bodyType !== undefined && typeof bodyType !== 'string') throw new InvalidManifestError(digest, 'expected mediaType to be a string');
  if (descriptorType !== undefined && bodyType !== undefined && descriptorType !== bodyType) {
    throw new InvalidManifestError(digest, `descriptor says ${descriptorType} but the document says ${bodyType}`);
  }
  const mediaType = descriptorType ?? bodyType ?? fallbackType ?? (hasManifests ? MediaTypes.ociIndex : MediaTypes.ociManifest);
  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(body.manifests)) throw new InvalidManifestError(digest, `expected ${mediaType} to have a "manifests" array`);
    return { kind: 'index', mediaType, body };
  }
  if (MANIFEST_TYPES.has(mediaType)) {
    if (hasManifests) throw new InvalidManifestError(digest, `ambiguous/malicious manifest: ${mediaType} has "manifests"`);
    if (!isObject(body.config) || !Array.isArray(body.layers)) throw new InvalidManifestError(digest, `expected ${mediaType} to have "config" and "layers"`);
    return { kind: 'manifest', mediaType, body };
  }
  throw new InvalidManifestError(digest, `expected an OCI or Docker schema2 manifest or index media type, found ${mediaType}`);
}

/** Validates the shape of an image config file. */
export function parseConfigFile(digest: string, v: unknown): ImageConfigFile {
  if (!isObject(v)) throw new InvalidManifestError(digest, 'config: expected a JSON object');
  if (typeof v.architecture !== 'string' || typeof v.os !== 'string') throw new InvalidManifestError(digest, 'config: expected architecture and os strings');
  const rootfs = v.rootfs;
  if (!isObject(rootfs) || rootfs.type !== 'layers' || !Array.isArray(rootfs.diff_ids) || !rootfs.diff_ids.every(isDigest)) {
    throw new InvalidManifestError(digest, 'config: expected rootfs {type: "layers", diff_ids: [sha256 digests]}');
  }
  if (v.config !== undefined && v.config !== null && !isObject(v.config)) throw new InvalidManifestError(digest, 'config: expected "config" to be an object');
  if (v.history !== undefined && !Array.isArray(v.history)) throw new InvalidManifestError(digest, 'config: expected "history" to be an array');
  return { ...(v as unknown as ImageConfigFile), config: isObject(v.config) ? (v.config as ImageConfigFile['config']) : {} };
}

function selectFromIndex(digest: Digest, index: Json, want: Platform): Descriptor[] {
  const entries = (index.manifests as unknown[]).map((m, i) => parseDescriptor(digest, `manifests[${i}]`, m));
  const ranked: { d: Descriptor; rank: number; i: number }[] = [];
  const nested: Descriptor[] = [];
  entries.forEach((d, i) => {
    if (d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest') return;
    if (INDEX_TYPES.has(d.mediaType)) {
      nested.push(d);
      return;
    }
    if (!MANIFEST_TYPES.has(d.mediaType)) return;
    const rank = d.platform === undefined ? undefined : platformRank(want, d.platform);
    if (rank !== undefined) ranked.push({ d, rank, i });
  });
  ranked.sort((a, b) => a.rank - b.rank || a.i - b.i);
  const out = ranked.map((r) => r.d);
  // An index with a single platform-less manifest (common for single-image OCI layouts).
  const manifests = entries.filter((d) => MANIFEST_TYPES.has(d.mediaType));
  if (out.length === 0 && manifests.length === 1 && manifests[0]!.platform === undefined) out.push(manifests[0]!);
  return [...out, ...nested];
}

function availablePlatforms(index: Json): string[] {
  const out: string[] = [];
  for (const m of index.manifests as unknown[]) {
    if (isObject(m) && isObject(m.platform) && typeof m.platform.os === 'string' && typeof m.platform.architecture === 'string') {
      const isAttestation = isObject(m.annotations) && m.annotations['vnd.docker.reference.type'] === 'attestation-manifest';
      if (!isAttestation) out.push(formatPlatform(m.platform as unknown as Platform));
    }
  }
  return out;
}

async function readAt(store: ContentStore, desc: { digest: Digest; size?: number; mediaType?: string }, want: Platform, depth: number): Promise<StoredImage> {
  const { bytes, value } = await readJsonBlob(store, desc.digest, desc.size);
  const doc = classify(desc.digest, value, desc.mediaType);
  if (doc.kind === 'index') {
    if (depth >= MAX_INDEX_DEPTH) throw new InvalidManifestError(desc.digest, `expected at most ${MAX_INDEX_DEPTH} levels of nested indexes`);
    const candidates = selectFromIndex(desc.digest, doc.body, want);
    for (const c of candidates) {
      try {
        return await readAt(store, c, want, depth + 1);
      } catch (err) {
        // A nested index without our platform: try the next candidate.
        if (INDEX_TYPES.has(c.mediaType) && err instanceof NoMatchingPlatformError) continue;
        throw err;
      }
    }
    throw new NoMatchingPlatformError(formatPlatform(want), availablePlatforms(doc.body));
  }
  const body = doc.body;
  const config = parseDescriptor(desc.digest, 'config', body.config);
  if (!CONFIG_TYPES.has(config.mediaType)) {
    throw new InvalidManifestError(desc.digest, `config: expected an image config media type, found ${config.mediaType}`);
  }
  const layers = (body.layers as unknown[]).map((l, i) => parseDescriptor(desc.digest, `layers[${i}]`, l));
  for (const [i, l] of layers.entries()) {
    if (!LAYER_TYPES.has(l.mediaType)) throw new InvalidManifestError(desc.digest, `layers[${i}]: expected a layer media type, found ${l.mediaType}`);
  }
  const cfg = await readJsonBlob(store, config.digest, config.size);
  const configFile = parseConfigFile(config.digest, cfg.value);
  if (configFile.rootfs.diff_ids.length !== layers.length) {
    throw new InvalidManifestError(desc.digest, `expected one diff_id per layer, found ${configFile.rootfs.diff_ids.length} diff_ids for ${layers.length} layers`);
  }
  for (const l of layers) {
    if (FOREIGN_LAYER_TYPES.has(l.mediaType) && !(await store.has(l.digest))) continue;
    const info = await store.info(l.digest);
    if (info.size !== l.size) throw new SizeMismatchError(l.size, info.size);
  }
  const manifest: Manifest = { ...(body as unknown as Manifest), mediaType: doc.mediaType, config, layers };
  return {
    manifestDigest: desc.digest,
    manifestSize: bytes.byteLength,
    manifest,
    config: configFile,
    configDigest: config.digest,
    size: bytes.byteLength + config.size + layers.reduce((n, l) => n + l.size, 0),
  };
}

/**
 * Reads an image from the store. `digest` may name an OCI/Docker manifest or an
 * index/manifest list, in which case the manifest for `opts.platform` (default: this
 * host's platform) is chosen. Verifies the digests and sizes of what it reads, that
 * layer blobs are present with their sizes, and the shape of every document.
 */
export async function readImage(store: ContentStore, digest: Digest, opts: { platform?: Platform } = {}): Promise<StoredImage> {
  return readAt(store, { digest }, opts.platform ?? hostPlatform(), 0);
}

/**
 * Writes a manifest for a config blob already in the store. Used by {@link writeImage}
 * and by archive import, where the config bytes must stay as they came.
 */
export async function writeManifest(
  store: ContentStore,
  input: { config: Descriptor; configFile: ImageConfigFile; layers: readonly LayerRef[]; annotations?: Record<string, string> },
): Promise<StoredImage> {
  for (const [i, l] of input.layers.entries()) {
    if (!LAYER_TYPES.has(l.mediaType)) throw new InvalidManifestError(l.digest, `layers[${i}]: expected a layer media type, found ${l.mediaType}`);
    const info = await store.info(l.digest);
    if (info.size !== l.size) throw new SizeMismatchError(l.size, info.size);
  }
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: { mediaType: input.config.mediaType, digest: input.config.digest, size: input.config.size },
    layers: input.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  if (input.annotations !== undefined && Object.keys(input.annotations).length > 0) manifest.annotations = { ...input.annotations };
  const bytes = Buffer.from(canonicalJson(manifest));
  const info = await store.writeBlob(bytes);
  return {
    manifestDigest: info.digest,
    manifestSize: info.size,
    manifest,
    config: input.configFile,
    configDigest: input.config.digest,
    size: info.size + input.config.size + input.layers.reduce((n, l) => n + l.size, 0),
  };
}

/**
 * Writes the config and an OCI manifest for `layers` (which must already be in the
 * store) as canonical JSON, so the same input always gives the same digests.
 * `config.rootfs.diff_ids` is set from the layers' diffIds; a non-empty list that
 * disagrees with them is refused.
 */
export async function writeImage(
  store: ContentStore,
  input: { config: ImageConfigFile; layers: readonly LayerRef[]; annotations?: Record<string, string> },
): Promise<StoredImage> {
  const diffIds = input.layers.map((l) => l.diffId);
  const given = input.config.rootfs?.diff_ids ?? [];
  if (given.length > 0 && (given.length !== diffIds.length || given.some((d, i) => d !== diffIds[i]))) {
    throw new InvalidManifestError('(new image)', `config.rootfs.diff_ids ${JSON.stringify(given)} disagree with the layers' diffIds ${JSON.stringify(diffIds)}`);
  }
  const configFile: ImageConfigFile = { ...input.config, rootfs: { type: 'layers', diff_ids: diffIds } };
  parseConfigFile('(new image)', configFile);
  const configInfo = await store.writeBlob(Buffer.from(canonicalJson(configFile)));
  return writeManifest(store, {
    config: { mediaType: MediaTypes.ociConfig, digest: configInfo.digest, size: configInfo.size },
    configFile,
    layers: input.layers,
    ...(input.annotations === undefined ? {} : { annotations: input.annotations }),
  });
}

