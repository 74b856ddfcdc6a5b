import { isDigest, LAYER_MEDIA_TYPES, type Descriptor, type Digest } from '@tsbuild/snapshotter';
import type { KeyComponents, RecordedLayer } from '../cache/cache-db.js';
import { canonicalJson, keyOf, type Key } from '../cache/keys.js';
import { RemoteCacheError } from '../errors.js';

/**
 * The build cache as an OCI artifact: an OCI image manifest whose `artifactType` and
 * config media type are ours, whose config lists the cache records, and whose layers
 * are the records' layer blobs (the same blobs images use, so a registry stores them
 * once).
 */
export const CACHE_ARTIFACT_TYPE = 'application/vnd.tsbuild.cache.v1';
export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.tsbuild.cache.config.v1+json';
export const OCI_MANIFEST_MEDIA_TYPE = 'application/vnd.oci.image.manifest.v1+json';

/** Caps on what an import accepts before parsing. */
export const MAX_CACHE_CONFIG_SIZE = 32 * 1024 * 1024;
export const MAX_CACHE_RECORDS = 200_000;

/** One exported cache record. Host paths never appear: only keys, digests and the instruction text. */
export interface CacheArtifactRecord {
  /** the step's cache key */
  key: Key;
  /** the key it builds on (`components.parent`): a record's key, or the key of a base image */
  parent: string;
  /** the instruction as in the image history, e.g. `RUN /bin/sh -c make # buildkit` */
  description: string;
  /** the layer the step produced; absent when it changed no file */
  layer?: RecordedLayer;
  /**
   * When the record was made (ms since the epoch): its image-history time, so an image
   * rebuilt from the imported cache has the exporter's config and image ID. Absent in
   * caches written before it existed (the importing build's time is used then).
   */
  created?: number;
  /**
   * For `COPY --from` steps only: the key's components, so an importer can
   * match the step by its definition (parent, instruction, source stage key) without
   * reading the source stage's files (which would mean downloading its layers). Other
   * steps carry none: their components may hold build-arg values.
   */
  components?: KeyComponents;
}

/** The artifact's config blob. */
export interface CacheArtifactConfig {
  schemaVersion: 1;
  /** `min`: the final image's chain only; `max`: every step of the build */
  mode: 'min' | 'max';
  records: CacheArtifactRecord[];
}

/** The definition of a step: its key components without the file digest. */
export function definitionKey(c: { parent: string; op: string; args?: Record<string, string> | undefined; inputs?: Record<string, string> | undefined }): Key {
  return keyOf({ parent: c.parent, op: c.op, args: c.args, inputs: c.inputs });
}

/** Whether a record's components describe a `COPY --from` another stage or image (matchable by definition). */
export function isCopyFrom(c: KeyComponents): boolean {
  if (c.inputs?.from === undefined) return false;
  try {
    const op = JSON.parse(c.op) as { kind?: unknown };
    return op.kind === 'COPY';
  } catch {
    return false;
  }
}

/** The artifact's layers: every distinct layer of the records, in record order. */
export function artifactLayers(records: readonly CacheArtifactRecord[]): Descriptor[] {
  const seen = new Set<string>();
  const out: Descriptor[] = [];
  for (const r of records) {
    if (r.layer === undefined || seen.has(r.layer.digest)) continue;
    seen.add(r.layer.digest);
    out.push({ mediaType: r.layer.mediaType, digest: r.layer.digest, size: r.layer.size });
  }
  return out;
}

/** The config blob and manifest bytes of an artifact (canonical JSON: the same records give the same digests). */
export function encodeArtifact(config: CacheArtifactConfig, configDigest: (bytes: Buffer) => Digest): { config: Buffer; manifest: Buffer; layers: Descriptor[] } {
  const configBytes = Buffer.from(canonicalJson(config));
  const layers = artifactLayers(config.records);
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST_MEDIA_TYPE,
    artifactType: CACHE_ARTIFACT_TYPE,
    config: { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: configDigest(configBytes), size: configBytes.byteLength },
    layers,
  };
  return { config: configBytes, manifest: Buffer.from(canonicalJson(manifest)), layers };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isKey(v: unknown): v is Key {
  return typeof v === 'string' && isDigest(v);
}

function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Checks a fetched artifact manifest and returns its config and layer descriptors. */
export function parseArtifactManifest(source: string, body: Record<string, unknown>): { config: Descriptor; layers: Descriptor[] } {
  const cfg = body.config;
  if (!isObject(cfg) || cfg.mediaType !== CACHE_CONFIG_MEDIA_TYPE) {
    const found = isObject(cfg) ? JSON.stringify(cfg.mediaType) : 'no config';
    throw new RemoteCacheError(source, `expected a tsbuild cache manifest (config media type ${CACHE_CONFIG_MEDIA_TYPE}), found ${found}`);
  }
  if (!isKey(cfg.digest) || !isSize(cfg.size)) throw new RemoteCacheError(source, 'expected the cache config descriptor to have a sha256 digest and a size');
  if (cfg.size > MAX_CACHE_CONFIG_SIZE) throw new RemoteCacheError(source, `expected a cache config of at most ${MAX_CACHE_CONFIG_SIZE} bytes, found ${cfg.size}`);
  if (!Array.isArray(body.layers)) throw new RemoteCacheError(source, 'expected the cache manifest to have a "layers" array');
  const layers = body.layers.map((l, i): Descriptor => {
    if (!isObject(l) || typeof l.mediaType !== 'string' || !isKey(l.digest) || !isSize(l.size)) throw new RemoteCacheError(source, `layers[${i}]: expected a descriptor with mediaType, sha256 digest and size`);
    return { mediaType: l.mediaType, digest: l.digest, size: l.size };
  });
  return { config: { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: cfg.digest, size: cfg.size }, layers };
}

/**
 * Parses and checks a cache config against its manifest's layers: every key a sha256
 * digest, every layer one of the manifest's (same digest, size and media type) with a
 * known layer media type and a diffID, components (when present) hashing to the key.
 */
export function parseArtifactConfig(source: string, bytes: Buffer, layers: readonly Descriptor[]): CacheArtifactConfig {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new RemoteCacheError(source, 'expected the cache config to be JSON', 'INVALID_ARGUMENT', { cause: err });
  }
  if (!isObject(v) || v.schemaVersion !== 1) throw new RemoteCacheError(source, `expected cache config schemaVersion 1, found ${isObject(v) ? JSON.stringify(v.schemaVersion) : typeof v}`);
  if (v.mode !== 'min' && v.mode !== 'max') throw new RemoteCacheError(source, `expected cache mode min or max, found ${JSON.stringify(v.mode)}`);
  if (!Array.isArray(v.records)) throw new RemoteCacheError(source, 'expected a "records" array');
  if (v.records.length > MAX_CACHE_RECORDS) throw new RemoteCacheError(source, `expected at most ${MAX_CACHE_RECORDS} records, found ${v.records.length}`);
  const byDigest = new Map(layers.map((l) => [l.digest, l]));
  const records = v.records.map((r, i): CacheArtifactRecord => {
    const where = `records[${i}]`;
    if (!isObject(r) || !isKey(r.key) || typeof r.parent !== 'string' || typeof r.description !== 'string') {
      throw new RemoteCacheError(source, `${where}: expected key (sha256 digest), parent and description`);
    }
    const out: CacheArtifactRecord = { key: r.key, parent: r.parent, description: r.description };
    if (r.created !== undefined) {
      if (typeof r.created !== 'number' || !Number.isSafeInteger(r.created) || r.created < 0) throw new RemoteCacheError(source, `${where}: expected created as milliseconds since the epoch, found ${JSON.stringify(r.created)}`);
      out.created = r.created;
    }
    if (r.layer !== undefined) {
      const l = r.layer;
      if (!isObject(l) || typeof l.mediaType !== 'string' || !isKey(l.digest) || !isSize(l.size) || !isKey(l.diffId)) {
        throw new RemoteCacheError(source, `${where}: expected a layer with mediaType, digest, size and diffId`);
      }
      if (!LAYER_MEDIA_TYPES.has(l.mediaType)) throw new RemoteCacheError(source, `${where}: expected a layer media type, found ${l.mediaType}`);
      const m = byDigest.get(l.digest);
      if (m === undefined || m.size !== l.size || m.mediaType !== l.mediaType) {
        throw new RemoteCacheError(source, `${where}: expected its layer ${l.digest} among the manifest's layers (same size and media type), found ${m === undefined ? 'none' : `${m.size} bytes of ${m.mediaType}`}`);
      }
      out.layer = { mediaType: l.mediaType, digest: l.digest, size: l.size, diffId: l.diffId };
    }
    if (r.components !== undefined) {
      const c = r.components;
      if (!isObject(c) || typeof c.parent !== 'string' || typeof c.op !== 'string') throw new RemoteCacheError(source, `${where}: expected components with parent and op`);
      const comps = c as unknown as KeyComponents;
      if (keyOf(comps) !== r.key) throw new RemoteCacheError(source, `${where}: expected its components to hash to ${r.key}, found ${keyOf(comps)}`);
      if (comps.parent !== r.parent) throw new RemoteCacheError(source, `${where}: expected components.parent ${r.parent}, found ${comps.parent}`);
      out.components = comps;
    }
    return out;
  });
  return { schemaVersion: 1, mode: v.mode, records };
}
