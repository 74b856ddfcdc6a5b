import type { Digest } from '../content/digest.js';
import { InvalidManifestError } from '../errors.js';
import { parseDescriptor } from '../image/image.js';
import { formatPlatform, platformRank } from '../image/platform.js';
import { INDEX_TYPES, MANIFEST_TYPES, type Descriptor, type Platform } from '../image/types.js';

/** Accept header for manifest GETs: OCI and Docker schema 2, images and indexes. */
export const MANIFEST_ACCEPT: string = [...INDEX_TYPES, ...MANIFEST_TYPES].join(', ');

/** Content types a registry may use for a manifest without naming its kind. */
const GENERIC_TYPES = new Set(['', 'application/json', 'text/plain', 'application/octet-stream']);

/** A manifest or index as received: the exact bytes, their digest and the decided kind. */
export interface FetchedDocument {
  digest: Digest;
  bytes: Buffer;
  mediaType: string;
  kind: 'manifest' | 'index';
  body: Record<string, unknown>;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Decides what a fetched document is from (in order of trust) the referring
 * descriptor's media type, the body's own `mediaType` and the response Content-Type,
 * refusing any disagreement between them and ambiguous bodies (CVE-2021-41190).
 */
export function classifyDocument(digest: Digest, bytes: Buffer, contentType: string | null, descriptorType: string | undefined): FetchedDocument {
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new InvalidManifestError(digest, 'expected a JSON manifest', { cause: err });
  }
  if (!isObject(body)) throw new InvalidManifestError(digest, 'expected a JSON object');
  if (body.schemaVersion !== 2) throw new InvalidManifestError(digest, `expected schemaVersion 2, found ${JSON.stringify(body.schemaVersion)}`);
  const hasManifests = body.manifests !== undefined;
  if (hasManifests && (body.layers !== undefined || body.config !== undefined)) {
    throw new InvalidManifestError(digest, 'ambiguous/malicious manifest: has both "manifests" and "layers"/"config"');
  }
  const bodyType = body.mediaType;
  if (bodyType !== undefined && typeof bodyType !== 'string') throw new InvalidManifestError(digest, 'expected mediaType to be a string');
  const served = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const servedKnown = INDEX_TYPES.has(served) || MANIFEST_TYPES.has(served);
  if (!servedKnown && !GENERIC_TYPES.has(served)) {
    throw new InvalidManifestError(digest, `expected a manifest or index content type, found ${served}`);
  }
  if (descriptorType !== undefined && bodyType !== undefined && descriptorType !== bodyType) {
    throw new InvalidManifestError(digest, `descriptor says ${descriptorType} but the document says ${bodyType}`);
  }
  if (servedKnown && bodyType !== undefined && served !== bodyType) {
    throw new InvalidManifestError(digest, `served as ${served} but the document says ${bodyType}`);
  }
  const mediaType = descriptorType ?? bodyType ?? (servedKnown ? served : hasManifests ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json');
  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(body.manifests)) throw new InvalidManifestError(digest, `expected ${mediaType} to have a "manifests" array`);
    return { digest, bytes, mediaType, kind: 'index', body };
  }
  if (MANIFEST_TYPES.has(mediaType)) {
    if (hasManifests) throw new InvalidManifestError(digest, `ambiguous/malicious manifest: ${mediaType} has "manifests"`);
    if (!isObject(body.config) || !Array.isArray(body.layers)) throw new InvalidManifestError(digest, `expected ${mediaType} to have "config" and "layers"`);
    return { digest, bytes, mediaType, kind: 'manifest', body };
  }
  throw new InvalidManifestError(digest, `expected an OCI or Docker schema2 manifest or index media type, found ${mediaType}`);
}

/**
 * The entries of an index that can serve `want`, best first (containerd's matcher:
 * exact variant, then lower arm variants), then nested indexes; attestation manifests
 * and unknown media types are never chosen. A single platform-less manifest is taken.
 */
export function indexCandidates(index: FetchedDocument, want: Platform): Descriptor[] {
  const entries = (index.body.manifests as unknown[]).map((m, i) => parseDescriptor(index.digest, `manifests[${i}]`, m));
  const ranked: { d: Descriptor; rank: number; i: number }[] = [];
  const nested: Descriptor[] = [];
  entries.forEach((d, i) => {
    if (d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest') return;
    if (INDEX_TYPES.has(d.mediaType)) nested.push(d);
    else if (MANIFEST_TYPES.has(d.mediaType) && d.platform !== undefined) {
      const rank = platformRank(want, d.platform);
      if (rank !== undefined) ranked.push({ d, rank, i });
    }
  });
  ranked.sort((a, b) => a.rank - b.rank || a.i - b.i);
  const out = ranked.map((r) => r.d);
  const manifests = entries.filter((d) => MANIFEST_TYPES.has(d.mediaType));
  if (out.length === 0 && manifests.length === 1 && manifests[0]!.platform === undefined) out.push(manifests[0]!);
  return [...out, ...nested];
}

/** "os/arch[/variant]" of every non-attestation entry, for the no-match error. */
export function indexPlatforms(index: FetchedDocument): string[] {
  const out: string[] = [];
  for (const m of index.body.manifests as unknown[]) {
    if (!isObject(m) || !isObject(m.platform) || typeof m.platform.os !== 'string' || typeof m.platform.architecture !== 'string') continue;
    if (isObject(m.annotations) && m.annotations['vnd.docker.reference.type'] === 'attestation-manifest') continue;
    out.push(formatPlatform(m.platform as unknown as Platform));
  }
  return out;
}
