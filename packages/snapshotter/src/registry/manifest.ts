import type { Digest } from '../content/digest.js';
import { InvalidManifestError } from '../errors.js';
import { classify, parseDescriptor } from '../image/image.js';
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
  const served = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const servedKnown = INDEX_TYPES.has(served) || MANIFEST_TYPES.has(served);
  if (!servedKnown && !GENERIC_TYPES.has(served)) {
    throw new InvalidManifestError(digest, `expected a manifest or index content type, found ${served}`);
  }
  const bodyType = isObject(body) ? body.mediaType : undefined;
  if (servedKnown && typeof bodyType === 'string' && served !== bodyType) {
    throw new InvalidManifestError(digest, `served as ${served} but the document says ${bodyType}`);
  }
  // the shape and media-type rules are the image module's (the same as for documents read from the store)
  const doc = classify(digest, body, descriptorType, servedKnown ? served : undefined);
  return { digest, bytes, mediaType: doc.mediaType, kind: doc.kind, body: doc.body as Record<string, unknown> };
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
