import { createReadStream } from 'node:fs';
import pLimit from 'p-limit';
import { crashPoint } from '../crash-point.js';
import type { ContentStore, ContentWriter } from '../content/content-store.js';
import { sha256, type Digest } from '../content/digest.js';
import {
  BlobNotFoundError,
  ContentTooLargeError,
  DigestMismatchError,
  InvalidManifestError,
  NoMatchingPlatformError,
  RegistryProtocolError,
  SizeMismatchError,
} from '../errors.js';
import { parseDescriptor, readImage } from '../image/image.js';
import type { ImageStore } from '../image/image-store.js';
import { formatPlatform, hostPlatform, platformRank } from '../image/platform.js';
import { parseImageRef, type ImageReference } from '../image/reference.js';
import { CONFIG_TYPES, INDEX_TYPES, LAYER_TYPES, MAX_JSON_SIZE, MediaTypes, type Descriptor, type Platform, type StoredImage } from '../image/types.js';
import { DockerCredentials } from './credentials.js';
import { classifyDocument, indexCandidates, indexPlatforms, MANIFEST_ACCEPT, type FetchedDocument } from './manifest.js';
import { blobSources, recordBlobSources } from './sources.js';
import { discard, endpointFor, isTransient, readCapped, RegistryTransport, responseError, type Endpoint, type HttpResponse } from './transport.js';
import type { RegistryOptions, TransferProgress } from './types.js';

const MAX_INDEX_DEPTH = 4;
const MAX_MOUNT_SOURCES = 3;
/** Pulled bytes are handed to the content writer in writes of about this size. */
const WRITE_BATCH = 1 << 20;
/** Bytes of one blob handed to the writer and not yet written, before the download waits. */
const MAX_INFLIGHT_WRITE = 8 << 20;
const FOREIGN_LAYER_TYPES: ReadonlySet<string> = new Set([
  MediaTypes.dockerForeignLayerGzip,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
]);

/** What {@link RegistryClient.resolve} found for a reference. */
export interface ResolvedImage {
  ref: ImageReference;
  /** The image manifest for the requested platform. */
  descriptor: Descriptor;
  /** The index or manifest list the manifest was chosen from, when the reference named one. */
  index?: Descriptor;
}

interface Resolution {
  ref: ImageReference;
  endpoint: Endpoint;
  /** Documents from the root down to the platform manifest (last). */
  chain: FetchedDocument[];
}

function blobDescriptors(image: StoredImage): Descriptor[] {
  const seen = new Set<Digest>();
  const out: Descriptor[] = [];
  for (const d of [image.manifest.config, ...image.manifest.layers]) {
    if (seen.has(d.digest)) continue;
    seen.add(d.digest);
    out.push(d);
  }
  return out;
}

function repoPath(ref: ImageReference): string {
  return `/v2/${ref.path}`;
}

/**
 * An OCI Distribution client: resolves, pulls and pushes images between a registry and
 * a {@link ContentStore}. Everything received is verified against its digest and size
 * before use; JSON bodies are capped; blobs stream to and from disk, bounded by
 * `concurrency`. One client caches tokens, so reuse it across operations.
 */
export class RegistryClient {
  readonly #opts: Required<Pick<RegistryOptions, 'concurrency' | 'retries' | 'monolithicPushMax' | 'chunkSize'>> & RegistryOptions;
  readonly #transport: RegistryTransport;

  constructor(opts: RegistryOptions = {}) {
    this.#opts = {
      ...opts,
      concurrency: Math.max(1, opts.concurrency ?? 4),
      retries: Math.max(0, opts.retries ?? 4),
      monolithicPushMax: opts.monolithicPushMax ?? 64 * 1024 * 1024,
      chunkSize: Math.max(1, opts.chunkSize ?? 32 * 1024 * 1024),
    };
    this.#transport = new RegistryTransport({
      credentials: new DockerCredentials(opts.dockerConfigDir),
      insecureRegistries: opts.insecureRegistries ?? [],
      retries: this.#opts.retries,
      retryDelayMs: opts.retryDelayMs ?? 250,
      userAgent: opts.userAgent ?? 'tsbuild/0.1',
      signal: opts.signal,
    });
  }

  #progress(e: TransferProgress): void {
    this.#opts.onProgress?.(e);
  }

  #endpoint(ref: ImageReference): Endpoint {
    return endpointFor(ref.domain, this.#opts.insecureRegistries ?? []);
  }

  /**
   * Resolves `ref` (`name[:tag][@digest]`, Docker-normalised) to the image manifest for
   * `opts.platform` (default: this host), following indexes. Verifies the digest and
   * media type of every document it reads; stores nothing.
   */
  async resolve(ref: string, opts: { platform?: Platform } = {}): Promise<ResolvedImage> {
    const r = await this.#resolve(parseImageRef(ref), opts.platform ?? hostPlatform());
    const last = r.chain[r.chain.length - 1]!;
    const out: ResolvedImage = { ref: r.ref, descriptor: { mediaType: last.mediaType, digest: last.digest, size: last.bytes.byteLength } };
    const root = r.chain[0]!;
    if (r.chain.length > 1) out.index = { mediaType: root.mediaType, digest: root.digest, size: root.bytes.byteLength };
    return out;
  }

  async #resolve(ref: ImageReference, platform: Platform): Promise<Resolution> {
    const endpoint = this.#endpoint(ref);
    const root = await this.#fetchManifest(endpoint, ref, ref.digest ?? ref.tag!, ref.digest === undefined ? undefined : { digest: ref.digest });
    const chain = await this.#descend(endpoint, ref, root, platform, 0);
    return { ref, endpoint, chain };
  }

  async #descend(endpoint: Endpoint, ref: ImageReference, doc: FetchedDocument, platform: Platform, depth: number): Promise<FetchedDocument[]> {
    if (doc.kind === 'manifest') return [doc];
    if (depth >= MAX_INDEX_DEPTH) throw new InvalidManifestError(doc.digest, `expected at most ${MAX_INDEX_DEPTH} levels of nested indexes`);
    for (const c of indexCandidates(doc, platform)) {
      const child = await this.#fetchManifest(endpoint, ref, c.digest, c);
      try {
        return [doc, ...(await this.#descend(endpoint, ref, child, platform, depth + 1))];
      } catch (err) {
        if (INDEX_TYPES.has(c.mediaType) && err instanceof NoMatchingPlatformError) continue;
        throw err;
      }
    }
    throw new NoMatchingPlatformError(formatPlatform(platform), indexPlatforms(doc));
  }

  /** GETs a manifest, capped, hashing exactly the bytes received. */
  async #fetchManifest(endpoint: Endpoint, ref: ImageReference, reference: string, expect: { digest: Digest; size?: number; mediaType?: string } | undefined): Promise<FetchedDocument> {
    const what = `manifest ${ref.domain}/${ref.path}:${reference}`;
    if (expect?.size !== undefined && expect.size > MAX_JSON_SIZE) throw new ContentTooLargeError(what, MAX_JSON_SIZE, expect.size);
    const url = `${endpoint.base}${repoPath(ref)}/manifests/${reference}`;
    const res = await this.#transport.request({ endpoint, scopes: [`repository:${ref.path}:pull`], method: 'GET', url, headers: { accept: MANIFEST_ACCEPT } });
    if (res.status !== 200) throw await responseError(res, 'GET', url, 'http 200 with a manifest');
    const bytes = await readCapped(res, MAX_JSON_SIZE, what);
    if (expect?.size !== undefined && bytes.byteLength !== expect.size) throw new SizeMismatchError(expect.size, bytes.byteLength);
    const digest = sha256(bytes);
    if (expect !== undefined && digest !== expect.digest) throw new DigestMismatchError(expect.digest, digest);
    return classifyDocument(digest, bytes, res.headers.get('content-type'), expect?.mediaType);
  }

  /**
   * Pulls `ref` into `store` and tags it in `images` under its canonical name (tag
   * references only; digest references are stored untagged). Without `force`, an image
   * already known locally under that tag (or digest) for the platform is returned with
   * no network access; with `force` the reference is resolved again. Blobs already in
   * the store are never downloaded again. Returns the platform's image.
   */
  async pull(store: ContentStore, images: ImageStore, ref: string, opts: { platform?: Platform; force?: boolean } = {}): Promise<StoredImage> {
    const parsed = parseImageRef(ref);
    const platform = opts.platform ?? hostPlatform();
    if (opts.force !== true) {
      const local = await this.#local(store, images, parsed, platform);
      if (local !== undefined) return local;
    }
    const r = await this.#resolve(parsed, platform);
    const manifestDoc = r.chain[r.chain.length - 1]!;
    const body = manifestDoc.body;
    const config = parseDescriptor(manifestDoc.digest, 'config', body.config);
    if (!CONFIG_TYPES.has(config.mediaType)) throw new InvalidManifestError(manifestDoc.digest, `config: expected an image config media type, found ${config.mediaType}`);
    if (config.size > MAX_JSON_SIZE) throw new ContentTooLargeError(`config ${config.digest}`, MAX_JSON_SIZE, config.size);
    const layers = (body.layers as unknown[]).map((l, i) => parseDescriptor(manifestDoc.digest, `layers[${i}]`, l));
    for (const [i, l] of layers.entries()) {
      if (!LAYER_TYPES.has(l.mediaType)) throw new InvalidManifestError(manifestDoc.digest, `layers[${i}]: expected a layer media type, found ${l.mediaType}`);
    }
    const limit = pLimit(this.#opts.concurrency);
    const seen = new Set<Digest>();
    const blobs = [config, ...layers].filter((d) => (seen.has(d.digest) ? false : (seen.add(d.digest), true)));
    // Every blob starts at once; `limit` bounds the downloads, commits (fsync) run outside it.
    const results = await Promise.allSettled(blobs.map((d) => this.#pullBlob(store, r.endpoint, r.ref, d, limit)));
    const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    // Manifests last, leaf first, so a stored manifest always has its blobs.
    for (const doc of [...r.chain].reverse()) {
      await store.writeBlob(doc.bytes, { digest: doc.digest });
      this.#progress({ id: doc.digest, action: 'pull', current: doc.bytes.byteLength, total: doc.bytes.byteLength });
    }
    const image = await readImage(store, manifestDoc.digest, { platform });
    await recordBlobSources(store, `${r.ref.domain}/${r.ref.path}`, [...blobs.map((b) => b.digest), ...r.chain.map((d) => d.digest)]);
    if (parsed.digest === undefined && parsed.tag !== undefined) await images.tag(`${parsed.domain}/${parsed.path}:${parsed.tag}`, image);
    return image;
  }

  /** The locally known image for a reference and platform, if any. */
  async #local(store: ContentStore, images: ImageStore, ref: ImageReference, platform: Platform): Promise<StoredImage | undefined> {
    let image: StoredImage | undefined;
    try {
      if (ref.digest !== undefined) image = (await store.has(ref.digest)) ? await readImage(store, ref.digest, { platform }) : undefined;
      else image = await images.resolve(`${ref.domain}/${ref.path}:${ref.tag!}`, { platform });
    } catch (err) {
      // Partly present (an index whose platform manifest was never pulled): go to the registry.
      if (err instanceof BlobNotFoundError || err instanceof NoMatchingPlatformError) return undefined;
      throw err;
    }
    if (image === undefined) return undefined;
    const cfg = image.config;
    const p: Platform = cfg.variant === undefined ? { os: cfg.os, architecture: cfg.architecture } : { os: cfg.os, architecture: cfg.architecture, variant: cfg.variant };
    return platformRank(platform, p) === undefined ? undefined : image;
  }

  /**
   * Downloads one blob into the store (skipped when present), verifying size and digest,
   * resuming with Range. `slot` bounds the download (the HTTP body) only: the commit
   * (fsync, rename) runs after the slot is released, so a blob's fsync overlaps the next
   * downloads instead of holding a connection slot.
   *
   * Body chunks (64 KiB from the socket) are coalesced into {@link WRITE_BATCH} writes and
   * handed to the writer without waiting for the previous write, up to
   * {@link MAX_INFLIGHT_WRITE} bytes in flight per blob: a write's round trip through the
   * thread pool no longer stalls the socket (one awaited write per chunk capped each
   * download at chunk size / write latency).
   */
  async #pullBlob(store: ContentStore, endpoint: Endpoint, ref: ImageReference, desc: Descriptor, slot: <T>(fn: () => Promise<T>) => Promise<T> = (fn) => fn()): Promise<void> {
    if (await store.has(desc.digest)) {
      const info = await store.info(desc.digest);
      if (info.size !== desc.size) throw new SizeMismatchError(desc.size, info.size);
      this.#progress({ id: desc.digest, action: 'exists', current: desc.size, total: desc.size });
      return;
    }
    const url = `${endpoint.base}${repoPath(ref)}/blobs/${desc.digest}`;
    let writer: ContentWriter | undefined;
    try {
      const downloaded = await slot(async () => {
        writer = await store.writer();
        return this.#download(store, endpoint, ref, desc, url, writer, (w) => (writer = w));
      });
      // 'foreign' when the registry does not serve a foreign layer: nothing to commit.
      if (downloaded === 'foreign') {
        await writer!.abort();
        return;
      }
      await writer!.commit({ digest: desc.digest, size: desc.size });
    } catch (err) {
      await writer?.abort();
      throw err;
    }
  }

  /** The GET loop of {@link #pullBlob}: fills `writer` with exactly `desc.size` bytes (or reports a missing foreign layer). */
  async #download(store: ContentStore, endpoint: Endpoint, ref: ImageReference, desc: Descriptor, url: string, first: ContentWriter, replace: (w: ContentWriter) => void): Promise<'ok' | 'foreign'> {
    let writer = first;
    /** Bytes received and handed (or about to be handed) to the writer. */
    let written = 0;
    // Chunks are copied into WRITE_BATCH buffers that are reused once written (a fresh
    // buffer per batch cost more in GC than the copy).
    const free: Buffer[] = [];
    let cur: Buffer | undefined;
    let fill = 0;
    const inflight: { done: Promise<void>; buf: Buffer }[] = [];
    const drainTo = async (limit: number): Promise<void> => {
      while (inflight.length * WRITE_BATCH > limit) {
        const w = inflight.shift()!;
        await w.done;
        free.push(w.buf);
      }
    };
    const flush = async (): Promise<void> => {
      if (cur === undefined || fill === 0) return;
      const buf = cur;
      const n = fill;
      cur = undefined;
      fill = 0;
      const done = writer.write(n === buf.byteLength ? buf : buf.subarray(0, n));
      // Failures are sticky in the writer (commit rethrows them); this handler only keeps
      // a write nobody awaits yet from counting as an unhandled rejection.
      done.catch(() => undefined);
      inflight.push({ done, buf });
      await drainTo(MAX_INFLIGHT_WRITE);
      this.#progress({ id: desc.digest, action: 'pull', current: written, total: desc.size });
    };
    const take = async (chunk: Buffer): Promise<void> => {
      let off = 0;
      while (off < chunk.byteLength) {
        cur ??= free.pop() ?? Buffer.allocUnsafeSlow(WRITE_BATCH);
        const n = Math.min(chunk.byteLength - off, WRITE_BATCH - fill);
        chunk.copy(cur, fill, off, off + n);
        fill += n;
        off += n;
        if (fill === WRITE_BATCH) await flush();
      }
    };
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = written > 0 ? { range: `bytes=${written}-` } : {};
      const res = await this.#transport.request({ endpoint, scopes: [`repository:${ref.path}:pull`], method: 'GET', url, headers });
      if (res.status === 404 && FOREIGN_LAYER_TYPES.has(desc.mediaType)) {
        // Foreign layers live at their `urls`, which we never follow (CVE-2020-15157); readImage tolerates their absence.
        await discard(res);
        return 'foreign';
      }
      if (res.status === 206 && written > 0) {
        const m = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
        if (m === null || Number(m[1]) !== written) {
          await discard(res);
          throw new RegistryProtocolError(url, `expected a range starting at byte ${written}, found ${JSON.stringify(res.headers.get('content-range'))}`);
        }
      } else if (res.status === 200) {
        if (written > 0) {
          // The server ignored Range: start over.
          cur = undefined;
          fill = 0;
          inflight.length = 0;
          await writer.abort();
          writer = await store.writer();
          replace(writer);
          written = 0;
        }
      } else {
        throw await responseError(res, 'GET', url, 'http 200 with the blob');
      }
      const declared = res.headers.get('content-length');
      if (declared !== null && written + Number(declared) > desc.size) {
        await discard(res);
        throw new SizeMismatchError(desc.size, written + Number(declared));
      }
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          if (written + chunk.byteLength > desc.size) {
            res.body.destroy();
            throw new SizeMismatchError(desc.size, written + chunk.byteLength);
          }
          written += chunk.byteLength;
          await take(chunk);
        }
      } catch (err) {
        // Bytes received before the error are good: hand them over, then resume after them.
        await flush();
        if (!isTransient(err) || attempt >= this.#opts.retries) throw err;
        await this.#transport.backoff(attempt);
        continue;
      }
      await flush();
      if (written < desc.size) {
        // The body ended early without an error (a truncating proxy or server): retry, resuming.
        if (attempt >= this.#opts.retries) throw new SizeMismatchError(desc.size, written);
        await this.#transport.backoff(attempt);
        continue;
      }
      break;
    }
    await drainTo(0);
    return 'ok';
  }

  /**
   * Pushes `image` (its config and layers, then the manifest bytes exactly as stored)
   * to `ref` (a tag, or a digest which must be the manifest's). Blobs the repository
   * already has are skipped (HEAD); blobs known to be in another repository of the same
   * registry are mounted from there; the rest are uploaded, in one PUT up to
   * `monolithicPushMax` bytes and in PATCH chunks above. Returns the manifest digest.
   */
  async push(store: ContentStore, image: StoredImage, ref: string): Promise<{ digest: Digest; size: number }> {
    const r = parseImageRef(ref);
    if (r.digest !== undefined && r.digest !== image.manifestDigest) throw new DigestMismatchError(r.digest, image.manifestDigest);
    // Foreign (non-distributable) layers are not pushed, as Docker does.
    const blobs = blobDescriptors(image).filter((d) => !FOREIGN_LAYER_TYPES.has(d.mediaType));
    await this.pushBlobs(store, ref, blobs);
    crashPoint('push-manifest');
    return this.pushManifest(store, ref, { mediaType: image.manifest.mediaType, digest: image.manifestDigest, size: image.manifestSize });
  }

  /**
   * Pushes blobs of `store` to the repository of `ref` (its tag or digest is ignored):
   * each is skipped when the repository has it (HEAD), mounted from another repository
   * of the same registry when known to be there, else uploaded. Bounded by `concurrency`.
   */
  async pushBlobs(store: ContentStore, ref: string, blobs: readonly Descriptor[]): Promise<void> {
    const r = parseImageRef(ref);
    const endpoint = this.#endpoint(r);
    const repo = `${r.domain}/${r.path}`;
    const sources = await blobSources(store);
    const limit = pLimit(this.#opts.concurrency);
    const results = await Promise.allSettled(
      blobs.map((d) =>
        limit(() => {
          const from = (sources[d.digest] ?? [])
            .filter((s) => s !== repo && s.startsWith(`${r.domain}/`))
            .map((s) => s.slice(r.domain.length + 1))
            .slice(0, MAX_MOUNT_SOURCES);
          return this.#pushBlob(store, endpoint, r, d, from);
        }),
      ),
    );
    const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    await recordBlobSources(store, repo, blobs.map((b) => b.digest));
  }

  /**
   * PUTs the manifest `desc` (stored in `store`, sent as the exact stored bytes) to
   * `ref` (a tag, or a digest which must be the manifest's). Its blobs must already be
   * in the repository ({@link pushBlobs}). Returns the manifest digest and size.
   */
  async pushManifest(store: ContentStore, ref: string, desc: Descriptor): Promise<{ digest: Digest; size: number }> {
    const r = parseImageRef(ref);
    if (r.digest !== undefined && r.digest !== desc.digest) throw new DigestMismatchError(r.digest, desc.digest);
    const endpoint = this.#endpoint(r);
    const bytes = await store.readBlob(desc.digest);
    const actual = sha256(bytes);
    if (actual !== desc.digest) throw new DigestMismatchError(desc.digest, actual);
    if (bytes.byteLength !== desc.size) throw new SizeMismatchError(desc.size, bytes.byteLength);
    const url = `${endpoint.base}${repoPath(r)}/manifests/${r.tag ?? desc.digest}`;
    const res = await this.#transport.request({
      endpoint,
      scopes: [`repository:${r.path}:pull,push`],
      method: 'PUT',
      url,
      headers: { 'content-type': desc.mediaType, 'content-length': String(bytes.byteLength) },
      body: () => bytes,
    });
    if (res.status !== 201 && res.status !== 200) throw await responseError(res, 'PUT', url, 'http 201 for the manifest');
    await discard(res);
    const echoed = res.headers.get('docker-content-digest');
    if (echoed !== null && echoed !== desc.digest) throw new RegistryProtocolError(url, `expected the registry to store manifest ${desc.digest}, found ${echoed}`);
    this.#progress({ id: desc.digest, action: 'push', current: bytes.byteLength, total: bytes.byteLength });
    await recordBlobSources(store, `${r.domain}/${r.path}`, [desc.digest]);
    return { digest: desc.digest, size: bytes.byteLength };
  }

  /**
   * GETs the one manifest or index `ref` names (no platform resolution), verified
   * against a digest reference, capped and classified; stores nothing.
   */
  async getManifest(ref: string): Promise<{ digest: Digest; mediaType: string; kind: 'manifest' | 'index'; bytes: Buffer; body: Record<string, unknown> }> {
    const r = parseImageRef(ref);
    const doc = await this.#fetchManifest(this.#endpoint(r), r, r.digest ?? r.tag!, r.digest === undefined ? undefined : { digest: r.digest });
    return { digest: doc.digest, mediaType: doc.mediaType, kind: doc.kind, bytes: doc.bytes, body: doc.body };
  }

  /** Whether the repository of `ref` has the blob `digest` (HEAD). */
  async hasBlob(ref: string, digest: Digest): Promise<boolean> {
    const r = parseImageRef(ref);
    const endpoint = this.#endpoint(r);
    const url = `${endpoint.base}${repoPath(r)}/blobs/${digest}`;
    const res = await this.#transport.request({ endpoint, scopes: [`repository:${r.path}:pull`], method: 'HEAD', url });
    await discard(res);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw await responseError(res, 'HEAD', url, 'http 200 or 404');
  }

  /**
   * Downloads one blob of the repository of `ref` into `store` (skipped when present),
   * verified against `desc`'s digest and size, resuming with Range, and records where it
   * came from (for later cross-repository mounts).
   */
  async fetchBlob(store: ContentStore, ref: string, desc: Descriptor): Promise<void> {
    const r = parseImageRef(ref);
    await this.#pullBlob(store, this.#endpoint(r), r, desc);
    if (await store.has(desc.digest)) await recordBlobSources(store, `${r.domain}/${r.path}`, [desc.digest]);
  }

  async #pushBlob(store: ContentStore, endpoint: Endpoint, ref: ImageReference, desc: Descriptor, mountFrom: readonly string[]): Promise<void> {
    const info = await store.info(desc.digest);
    if (info.size !== desc.size) throw new SizeMismatchError(desc.size, info.size);
    const pushScope = `repository:${ref.path}:pull,push`;
    const blobUrl = `${endpoint.base}${repoPath(ref)}/blobs/${desc.digest}`;
    const head = await this.#transport.request({ endpoint, scopes: [pushScope], method: 'HEAD', url: blobUrl });
    await discard(head);
    if (head.status === 200) {
      this.#progress({ id: desc.digest, action: 'exists', current: desc.size, total: desc.size });
      return;
    }
    if (head.status !== 404) throw await responseError(head, 'HEAD', blobUrl, 'http 200 or 404');
    // uploads read byte ranges of the blob file (chunks, retries): a virtual blob is
    // written out first (regenerated, verified, committed like any ingest)
    if ((await store.virtualBlob(desc.digest)) !== undefined) await store.materialize(desc.digest);

    for (let attempt = 0; ; attempt++) {
      let location: string | undefined;
      // Cross-repository mount: 201 means done, 202 means the registry opened an upload instead.
      for (const from of attempt === 0 ? mountFrom : []) {
        const url = `${endpoint.base}${repoPath(ref)}/blobs/uploads/?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(from)}`;
        const res = await this.#transport.request({ endpoint, scopes: [pushScope, `repository:${from}:pull`], method: 'POST', url, headers: { 'content-length': '0' } });
        await discard(res);
        if (res.status === 201) {
          this.#progress({ id: desc.digest, action: 'mounted', current: desc.size, total: desc.size });
          return;
        }
        if (res.status === 202) {
          location = this.#location(res, url);
          break;
        }
        if (res.status !== 404 && res.status !== 401 && res.status !== 403) throw await responseError(res, 'POST', url, 'http 201 or 202 for a mount');
      }
      if (location === undefined) {
        const url = `${endpoint.base}${repoPath(ref)}/blobs/uploads/`;
        const res = await this.#transport.request({ endpoint, scopes: [pushScope], method: 'POST', url, headers: { 'content-length': '0' } });
        if (res.status !== 202) throw await responseError(res, 'POST', url, 'http 202 opening an upload');
        await discard(res);
        location = this.#location(res, url);
      }
      try {
        await this.#upload(store, endpoint, pushScope, desc, location);
        crashPoint('push-blob');
        return;
      } catch (err) {
        // A dropped connection or 5xx mid-upload: the session may hold partial data, so open a new one.
        const status = (err as { status?: unknown }).status;
        const retryable = isTransient(err) || (typeof status === 'number' && status >= 500);
        if (!retryable || attempt >= this.#opts.retries) throw err;
        await this.#transport.backoff(attempt);
      }
    }
  }

  #location(res: HttpResponse, requestUrl: string): string {
    const loc = res.headers.get('location');
    if (loc === null || loc === '') throw new RegistryProtocolError(requestUrl, `expected a Location header with http ${res.status}, found none`);
    const u = new URL(loc, requestUrl);
    if (new URL(requestUrl).protocol === 'https:' && u.protocol !== 'https:') throw new RegistryProtocolError(requestUrl, `refusing an upload location downgraded to ${u.protocol}`);
    return u.toString();
  }

  async #upload(store: ContentStore, endpoint: Endpoint, scope: string, desc: Descriptor, location: string): Promise<void> {
    const path = store.blobPath(desc.digest);
    const progress = (current: number): void => this.#progress({ id: desc.digest, action: 'push', current, total: desc.size });
    // Streams [start, end) of the blob file; never holds more than one read buffer.
    async function* stream(start: number, end: number): AsyncGenerator<Uint8Array> {
      let sent = start;
      if (end <= start) return;
      for await (const chunk of createReadStream(path, { start, end: end - 1, highWaterMark: 1 << 20 })) {
        sent += (chunk as Buffer).byteLength;
        yield chunk as Buffer;
        progress(sent);
      }
    }
    let url = location;
    if (desc.size > this.#opts.monolithicPushMax) {
      for (let off = 0; off < desc.size; off += this.#opts.chunkSize) {
        const end = Math.min(desc.size, off + this.#opts.chunkSize);
        const res = await this.#transport.request({
          endpoint,
          scopes: [scope],
          method: 'PATCH',
          url,
          retry: false,
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(end - off), 'content-range': `${off}-${end - 1}` },
          body: () => stream(off, end),
        });
        if (res.status !== 202) throw await responseError(res, 'PATCH', url, 'http 202 for an upload chunk');
        await discard(res);
        url = this.#location(res, url);
      }
    }
    const put = new URL(url);
    put.searchParams.set('digest', desc.digest);
    const monolithic = desc.size <= this.#opts.monolithicPushMax;
    const res = await this.#transport.request({
      endpoint,
      scopes: [scope],
      method: 'PUT',
      url: put.toString(),
      retry: false,
      headers: monolithic
        ? { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) }
        : { 'content-length': '0' },
      body: monolithic && desc.size > 0 ? () => stream(0, desc.size) : () => new Uint8Array(0),
    });
    if (res.status !== 201) throw await responseError(res, 'PUT', put.toString(), 'http 201 completing the upload');
    await discard(res);
    const echoed = res.headers.get('docker-content-digest');
    if (echoed !== null && echoed !== desc.digest) throw new RegistryProtocolError(put.toString(), `expected the registry to store blob ${desc.digest}, found ${echoed}`);
    if (desc.size === 0) this.#progress({ id: desc.digest, action: 'push', current: 0, total: 0 });
  }
}
