import { InvalidReferenceError } from '../errors.js';
import { isDigest, type Digest } from '../content/digest.js';

/** A parsed, normalised image reference. */
export interface ImageReference {
  /** Registry host (and port), `docker.io` for Docker Hub. */
  domain: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  path: string;
  /** Tag; `latest` when neither tag nor digest was given. */
  tag?: string;
  digest?: Digest;
  /** docker.io/library/busybox:latest */
  canonical: string;
  /** busybox:latest (familiar) */
  familiar: string;
}

const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
const NAME_TOTAL_MAX = 255;

// Docker's reference grammar (distribution/reference).
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const ANCHORED_ID = /^[a-f0-9]{64}$/;

function fail(ref: string, reason: string): never {
  throw new InvalidReferenceError(ref, reason);
}

/**
 * Parses an image reference the way Docker does (`ParseNormalizedNamed` +
 * `TagNameOnly`): `busybox` → `docker.io/library/busybox:latest`,
 * `localhost:5000/a/b@sha256:…`, `index.docker.io/x` → `docker.io/library/x`.
 * Throws {@link InvalidReferenceError}.
 */
export function parseImageRef(ref: string): ImageReference {
  if (typeof ref !== 'string' || ref.length === 0) fail(String(ref), 'expected a non-empty reference');
  if (ref.length > 1024) fail(ref, `expected at most 1024 characters, found ${ref.length}`);
  if (ANCHORED_ID.test(ref)) fail(ref, 'cannot specify 64-byte hexadecimal strings as a repository name');

  let rest = ref;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) fail(ref, `expected a sha256:<64 hex> digest after "@", found ${JSON.stringify(d)}`);
    digest = d;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail(ref, `expected a tag of [A-Za-z0-9_.-] (at most 128, not starting with . or -), found ${JSON.stringify(tag)}`);
  }

  let domain: string;
  let path: string;
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase())) {
    domain = first;
    path = rest.slice(slash + 1);
  } else {
    domain = DEFAULT_DOMAIN;
    path = rest;
  }
  if (!DOMAIN.test(domain)) fail(ref, `expected a registry host[:port], found ${JSON.stringify(domain)}`);
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = OFFICIAL_REPO_PREFIX + path;
  if (path !== path.toLowerCase()) fail(ref, 'repository name must be lowercase');
  for (const c of path.split('/')) {
    if (!PATH_COMPONENT.test(c)) fail(ref, `expected path components of [a-z0-9] separated by ".", "_", "__" or "-", found ${JSON.stringify(c)}`);
  }
  const name = `${domain}/${path}`;
  if (name.length > NAME_TOTAL_MAX) fail(ref, `expected a repository name of at most ${NAME_TOTAL_MAX} characters, found ${name.length}`);
  if (tag === undefined && digest === undefined) tag = 'latest';

  const suffix = (tag === undefined ? '' : `:${tag}`) + (digest === undefined ? '' : `@${digest}`);
  let familiarName = name;
  if (domain === DEFAULT_DOMAIN) {
    familiarName = path.startsWith(OFFICIAL_REPO_PREFIX) && path.split('/').length === 2 ? path.slice(OFFICIAL_REPO_PREFIX.length) : path;
  }
  const out: ImageReference = { domain, path, canonical: name + suffix, familiar: familiarName + suffix };
  if (tag !== undefined) out.tag = tag;
  if (digest !== undefined) out.digest = digest;
  return out;
}
