import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { posix, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { nodeZlib } from '../util/lazy-node.js';
import tar from 'tar-stream';
import type { ContentInfo, ContentStore } from '../content/content-store.js';
import { type Digest } from '../content/digest.js';
import { ContentTooLargeError, DigestMismatchError, InvalidArchiveError, InvalidManifestError } from '../errors.js';
import { parseConfigFile, parseDescriptor, readImage, readJsonBlob, writeManifest } from './image.js';
import type { ImageStore } from './image-store.js';
import { readSmallFile } from './image-store.js';
import {
  CONTAINERD_NAME_ANNOTATION,
  INDEX_TYPES,
  MANIFEST_TYPES,
  MAX_JSON_SIZE,
  MediaTypes,
  REF_NAME_ANNOTATION,
  type Descriptor,
  type LayerRef,
  type Platform,
  type StoredImage,
} from './types.js';
import { parseImageRef } from './reference.js';

/** One image imported by {@link loadArchive}; `name` is its canonical name when it had one. */
export interface LoadedImage {
  name?: string;
  /** An OCI index entry's `org.opencontainers.image.ref.name` as written (often just a tag: `v1`). */
  refName?: string;
  image: StoredImage;
}

/** Top-level JSON members kept in memory (capped) rather than ingested as blobs. */
const JSON_MEMBERS = new Set(['manifest.json', 'index.json', 'oci-layout', 'repositories']);
const BLOB_MEMBER = /^blobs\/sha256\/([0-9a-f]{64})$/;
const MAX_MANIFEST_ENTRIES = 10_000;
const MAX_LINK_HOPS = 16;

interface FileMember {
  kind: 'file';
  info: ContentInfo;
  magic: 'gzip' | 'zstd' | 'none';
}
interface LinkMember {
  kind: 'link';
  target: string;
}
type Member = FileMember | LinkMember;

interface Members {
  files: Map<string, Member>;
  json: Map<string, Buffer>;
}

function sniff(head: Uint8Array): FileMember['magic'] {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

/** Normalises an archive member name; refuses absolute paths, `..`, NUL and empty names. */
function memberName(raw: string): string {
  if (raw.includes('\0')) throw new InvalidArchiveError(raw, 'expected a name without NUL bytes');
  if (raw.startsWith('/')) throw new InvalidArchiveError(raw, 'expected a relative name, found an absolute path');
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new InvalidArchiveError(raw, 'expected a name inside the archive, found a ".." component');
  if (parts.length === 0) throw new InvalidArchiveError(raw, 'expected a non-empty name');
  return parts.join('/');
}

/** Resolves a link target (relative to the link's directory for symlinks) inside the archive. */
function linkTarget(member: string, target: string, symlink: boolean): string {
  if (target.startsWith('/')) throw new InvalidArchiveError(member, `expected a link inside the archive, found absolute target ${JSON.stringify(target)}`);
  const joined = symlink ? posix.join(posix.dirname(member), target) : posix.normalize(target);
  if (joined === '..' || joined.startsWith('../')) throw new InvalidArchiveError(member, `expected a link inside the archive, found target ${JSON.stringify(target)} that leaves it`);
  return memberName(joined);
}

async function readCapped(stream: AsyncIterable<Buffer>, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    n += c.length;
    if (n > MAX_JSON_SIZE) throw new ContentTooLargeError(name, MAX_JSON_SIZE, n);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/** Streams `src` into the store; verifies `expect` (blobs/sha256/<hex> members must hash to their name). */
async function ingest(store: ContentStore, src: AsyncIterable<Buffer>, name: string, expect: { digest?: Digest; size?: number }): Promise<FileMember> {
  const w = await store.writer();
  let head: Buffer | undefined;
  try {
    for await (const chunk of src) {
      if (head === undefined || head.length < 4) head = Buffer.concat([head ?? Buffer.alloc(0), chunk.subarray(0, 4)]);
      await w.write(chunk);
    }
    const info = await w.commit(expect);
    return { kind: 'file', info, magic: sniff(head ?? Buffer.alloc(0)) };
  } catch (err) {
    await w.abort();
    if (err instanceof DigestMismatchError) throw new InvalidArchiveError(name, `content does not match its name: ${err.message}`, { cause: err });
    throw err;
  }
}

async function readTarMembers(store: ContentStore, input: Readable): Promise<Members> {
  const members: Members = { files: new Map(), json: new Map() };
  const extract = tar.extract();
  // Transparently gunzip a compressed archive (as `docker load` does).
  const it = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const first = await it.next();
  async function* replay(): AsyncGenerator<Buffer> {
    if (first.done === true) return;
    yield first.value;
    for (;;) {
      const r = await it.next();
      if (r.done === true) return;
      yield r.value;
    }
  }
  const src = Readable.from(replay(), { objectMode: false });
  const feeding = first.done !== true && sniff(first.value) === 'gzip' ? pipeline(src, nodeZlib().createGunzip(), extract) : pipeline(src, extract);
  const consuming = (async () => {
    for await (const entry of extract) {
      const name = memberName(entry.header.name);
      const type = entry.header.type ?? 'file';
      if (members.files.has(name) || members.json.has(name)) throw new InvalidArchiveError(name, 'expected unique member names, found a duplicate');
      if (type === 'directory') {
        entry.resume();
        continue;
      }
      if (type === 'symlink' || type === 'link') {
        members.files.set(name, { kind: 'link', target: linkTarget(name, entry.header.linkname ?? '', type === 'symlink') });
        entry.resume();
        continue;
      }
      if (type !== 'file' && type !== 'contiguous-file') throw new InvalidArchiveError(name, `expected regular files, directories or links, found a ${type}`);
      if (JSON_MEMBERS.has(name)) {
        members.json.set(name, await readCapped(entry as unknown as AsyncIterable<Buffer>, name));
        continue;
      }
      const base = posix.basename(name);
      if (base === 'VERSION' || base === 'json') {
        entry.resume(); // legacy v1 layer metadata; docker load ignores it too when manifest.json exists
        continue;
      }
      const m = BLOB_MEMBER.exec(name);
      const expect: { digest?: Digest; size?: number } = {};
      if (m !== null) expect.digest = `sha256:${m[1]}`;
      if (entry.header.size !== undefined) expect.size = entry.header.size;
      members.files.set(name, await ingest(store, entry as unknown as AsyncIterable<Buffer>, name, expect));
    }
  })();
  const consumed = consuming.catch((err: unknown) => {
    extract.destroy(err as Error);
    throw err;
  });
  await Promise.all([feeding, consumed]);
  return members;
}

async function readLayoutDir(store: ContentStore, dir: string): Promise<Members> {
  const members: Members = { files: new Map(), json: new Map() };
  for (const name of ['index.json', 'oci-layout']) {
    const st = await lstat(join(dir, name)).catch(() => undefined);
    if (st === undefined) continue;
    if (!st.isFile()) throw new InvalidArchiveError(name, 'expected a regular file, found a symlink or special file');
    members.json.set(name, Buffer.from(await readSmallFile(join(dir, name), MAX_JSON_SIZE)));
  }
  const blobDir = join(dir, 'blobs', 'sha256');
  for (const hex of await readdir(blobDir).catch(() => [] as string[])) {
    const name = `blobs/sha256/${hex}`;
    const st = await lstat(join(blobDir, hex));
    if (!st.isFile()) throw new InvalidArchiveError(name, 'expected a regular file, found a symlink or special file');
    if (!/^[0-9a-f]{64}$/.test(hex)) continue;
    members.files.set(name, await ingest(store, createReadStream(join(blobDir, hex), { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>, name, { digest: `sha256:${hex}`, size: st.size }));
  }
  return members;
}

function lookup(members: Members, from: string, raw: unknown): FileMember {
  if (typeof raw !== 'string') throw new InvalidArchiveError(from, `expected a member path string, found ${JSON.stringify(raw)}`);
  let name = memberName(raw);
  for (let hops = 0; hops <= MAX_LINK_HOPS; hops++) {
    const m = members.files.get(name);
    if (m === undefined) throw new InvalidArchiveError(from, `references ${JSON.stringify(raw)}, which is not in the archive`);
    if (m.kind === 'file') return m;
    name = m.target;
  }
  throw new InvalidArchiveError(from, `expected at most ${MAX_LINK_HOPS} link hops resolving ${JSON.stringify(raw)}`);
}

function parseJson(name: string, bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new InvalidArchiveError(name, 'expected valid JSON', { cause: err });
  }
}

function nameOf(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  try {
    return parseImageRef(raw).canonical;
  } catch {
    return undefined; // an OCI ref.name may be a bare tag or any string: it is not an image name we can register
  }
}

/**
 * The image name an OCI `ref.name` stands for, if it is one: containerd, `docker save` and
 * skopeo write just the tag there (`v1`, `latest`), which would otherwise parse as the
 * image `docker.io/library/v1:latest`. A name has a repository path (`/`) or `name:tag`.
 */
function refNameAsImageName(raw: string | undefined): string | undefined {
  if (raw === undefined || !(raw.includes('/') || /^[a-z0-9]+(?:[._-][a-z0-9]+)*:[\w][\w.-]*$/.test(raw))) return undefined;
  return nameOf(raw);
}

async function diffIdOf(store: ContentStore, layer: FileMember): Promise<Digest> {
  if (layer.magic === 'none') return layer.info.digest;
  if (layer.magic === 'zstd') throw new InvalidArchiveError(undefined, 'zstd-compressed layers in a docker-archive are not supported');
  const h = createHash('sha256');
  await pipeline(store.createReadStream(layer.info.digest), nodeZlib().createGunzip(), async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) h.update(c);
  });
  return `sha256:${h.digest('hex')}`;
}

async function loadDocker(store: ContentStore, images: ImageStore, members: Members, manifestJson: Buffer): Promise<LoadedImage[]> {
  const v = parseJson('manifest.json', manifestJson);
  if (!Array.isArray(v) || v.length > MAX_MANIFEST_ENTRIES) throw new InvalidArchiveError('manifest.json', `expected an array of at most ${MAX_MANIFEST_ENTRIES} entries`);
  const out: LoadedImage[] = [];
  for (const [i, e] of (v as unknown[]).entries()) {
    const where = `manifest.json[${i}]`;
    if (typeof e !== 'object' || e === null) throw new InvalidArchiveError(where, 'expected an object');
    const { Config, RepoTags, Layers } = e as { Config?: unknown; RepoTags?: unknown; Layers?: unknown };
    if (!Array.isArray(Layers)) throw new InvalidArchiveError(where, 'expected a Layers array');
    if (RepoTags !== undefined && RepoTags !== null && (!Array.isArray(RepoTags) || !RepoTags.every((t) => typeof t === 'string'))) {
      throw new InvalidArchiveError(where, 'expected RepoTags to be an array of strings');
    }
    const cfgMember = lookup(members, where, Config);
    const cfg = await readJsonBlob(store, cfgMember.info.digest);
    const configFile = parseConfigFile(cfgMember.info.digest, cfg.value);
    if (configFile.rootfs.diff_ids.length !== Layers.length) {
      throw new InvalidArchiveError(where, `expected one layer per diff_id, found ${Layers.length} layers for ${configFile.rootfs.diff_ids.length} diff_ids`);
    }
    const layers: LayerRef[] = [];
    for (const [j, raw] of Layers.entries()) {
      const l = lookup(members, `${where}.Layers[${j}]`, raw);
      const diffId = await diffIdOf(store, l);
      const want = configFile.rootfs.diff_ids[j]!;
      if (diffId !== want) throw new InvalidArchiveError(`${where}.Layers[${j}]`, `layer does not match the config: expected diff_id ${want}, found ${diffId}`, { cause: new DigestMismatchError(want, diffId) });
      const mediaType = l.magic === 'gzip' ? MediaTypes.ociLayerGzip : MediaTypes.ociLayer;
      layers.push({ mediaType, digest: l.info.digest, size: l.info.size, diffId });
    }
    const image = await writeManifest(store, {
      config: { mediaType: MediaTypes.ociConfig, digest: cfgMember.info.digest, size: cfgMember.info.size },
      configFile,
      layers,
    });
    const tags = (RepoTags ?? []) as string[];
    if (tags.length === 0) out.push({ image });
    for (const t of tags) {
      const name = parseImageRef(t).canonical;
      await images.tag(name, image);
      out.push({ name, image });
    }
  }
  return out;
}

async function loadOci(store: ContentStore, images: ImageStore, members: Members, indexJson: Buffer, platform: Platform | undefined): Promise<LoadedImage[]> {
  const v = parseJson('index.json', indexJson);
  if (typeof v !== 'object' || v === null || (v as { schemaVersion?: unknown }).schemaVersion !== 2 || !Array.isArray((v as { manifests?: unknown }).manifests)) {
    throw new InvalidArchiveError('index.json', 'expected an OCI index with schemaVersion 2 and a manifests array');
  }
  const layout = members.json.get('oci-layout');
  if (layout !== undefined && (parseJson('oci-layout', layout) as { imageLayoutVersion?: unknown })?.imageLayoutVersion !== '1.0.0') {
    throw new InvalidArchiveError('oci-layout', 'expected imageLayoutVersion 1.0.0');
  }
  const out: LoadedImage[] = [];
  const entries = (v as { manifests: unknown[] }).manifests;
  if (entries.length > MAX_MANIFEST_ENTRIES) throw new InvalidArchiveError('index.json', `expected at most ${MAX_MANIFEST_ENTRIES} manifests`);
  for (const [i, raw] of entries.entries()) {
    const d: Descriptor = parseDescriptor('index.json', `manifests[${i}]`, raw);
    if (!MANIFEST_TYPES.has(d.mediaType) && !INDEX_TYPES.has(d.mediaType)) continue; // e.g. attestations or artifacts
    const member = lookup(members, `index.json manifests[${i}]`, `blobs/sha256/${d.digest.slice(7)}`);
    if (member.info.size !== d.size) throw new InvalidArchiveError(`index.json manifests[${i}]`, `expected size ${d.size}, found ${member.info.size}`);
    const image = await readImage(store, d.digest, platform === undefined ? {} : { platform });
    if (MANIFEST_TYPES.has(d.mediaType) && image.manifest.mediaType !== d.mediaType) {
      throw new InvalidManifestError(d.digest, `descriptor says ${d.mediaType} but the document says ${image.manifest.mediaType}`);
    }
    const refName = d.annotations?.[REF_NAME_ANNOTATION];
    const name = nameOf(d.annotations?.[CONTAINERD_NAME_ANNOTATION]) ?? refNameAsImageName(refName);
    const tagged: LoadedImage = refName === undefined ? { image } : { refName, image };
    if (name === undefined) {
      out.push(tagged);
      continue;
    }
    await images.tagDescriptor(name, { mediaType: d.mediaType, digest: d.digest, size: d.size });
    out.push({ name, ...tagged });
  }
  return out;
}

/**
 * Imports a docker-archive (`docker save`, legacy or Docker 25+ layout), an OCI archive
 * tar, either gzip-compressed, or an OCI layout directory. Every blob is verified as it
 * is ingested; names (RepoTags, `io.containerd.image.name` or
 * `org.opencontainers.image.ref.name`) are tagged in `images`. The input is untrusted:
 * names with `..` or absolute paths, devices, links leaving the archive, references to
 * missing members, and JSON members over 4 MiB are refused. When an archive carries
 * both an OCI index.json and a manifest.json, the OCI index wins (exact manifest bytes)
 * and the RepoTags are added to the matching images.
 */
export async function loadArchive(
  store: ContentStore,
  images: ImageStore,
  input: string | Readable,
  opts: { platform?: Platform } = {},
): Promise<LoadedImage[]> {
  let members: Members;
  if (typeof input === 'string' && (await lstat(input)).isDirectory()) members = await readLayoutDir(store, input);
  else members = await readTarMembers(store, typeof input === 'string' ? createReadStream(input, { highWaterMark: 1 << 20 }) : input);

  const index = members.json.get('index.json');
  const manifest = members.json.get('manifest.json');
  if (index !== undefined) {
    const loaded = await loadOci(store, images, members, index, opts.platform);
    if (manifest === undefined) return loaded;
    // Docker 25+ archives: also honour RepoTags, matched by config digest.
    const byConfig = new Map(loaded.map((l) => [l.image.configDigest, l.image]));
    const extra: LoadedImage[] = [];
    const v = parseJson('manifest.json', manifest);
    if (Array.isArray(v)) {
      for (const e of v as { Config?: unknown; RepoTags?: unknown }[]) {
        if (typeof e !== 'object' || e === null || !Array.isArray(e.RepoTags)) continue;
        const cfg = lookup(members, 'manifest.json', e.Config);
        const image = byConfig.get(cfg.info.digest);
        if (image === undefined) continue;
        for (const t of e.RepoTags as unknown[]) {
          if (typeof t !== 'string') throw new InvalidArchiveError('manifest.json', 'expected RepoTags to be strings');
          const name = parseImageRef(t).canonical;
          if (loaded.some((l) => l.name === name) || extra.some((l) => l.name === name)) continue;
          await images.tag(name, image);
          extra.push({ name, image });
        }
      }
    }
    return [...loaded.filter((l) => l.name !== undefined || !extra.some((x) => x.image.manifestDigest === l.image.manifestDigest)), ...extra];
  }
  if (manifest !== undefined) return loadDocker(store, images, members, manifest);
  throw new InvalidArchiveError(undefined, 'expected a manifest.json (docker-archive) or index.json (OCI layout), found neither');
}

