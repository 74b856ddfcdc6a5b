import { randomBytes } from 'node:crypto';
import { crashPoint } from '../crash-point.js';
import { open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, type ContentStore } from '../content/content-store.js';
import { isDigest, type Digest } from '../content/digest.js';
import { ContentTooLargeError, ImageNotFoundError, InvalidManifestError, InvalidReferenceError } from '../errors.js';
import { canonicalJson } from './canonical-json.js';
import { parseDescriptor, readImage, readJsonBlob } from './image.js';
import { withLockFile } from './lock-file.js';
import { parseImageRef } from './reference.js';
import { CREATED_ANNOTATION, INDEX_TYPES, MediaTypes, REF_NAME_ANNOTATION, type Descriptor, type Platform, type StoredImage } from './types.js';

/** One named image as listed by {@link ImageStore.list}. */
export interface ImageListEntry {
  /** Canonical name, e.g. docker.io/library/hello:latest */
  name: string;
  /** Familiar name, e.g. hello:latest */
  familiar: string;
  digest: Digest;
  size: number;
  created?: string;
}

const MAX_INDEX_SIZE = 64 * 1024 * 1024;

/**
 * Image names → manifests, kept in the content store's OCI layout `index.json`
 * (annotation `org.opencontainers.image.ref.name` = canonical name, plus
 * `io.tsbuild.created`). Updates take an exclusive lock file and replace the file
 * atomically, so several processes can tag at once without losing updates.
 */
export class ImageStore {
  readonly content: ContentStore;
  readonly #indexPath: string;

  private constructor(content: ContentStore) {
    this.content = content;
    this.#indexPath = join(content.root, 'index.json');
  }

  static async open(store: ContentStore): Promise<ImageStore> {
    const images = new ImageStore(store);
    await images.#read(); // validates index.json now rather than at first use
    return images;
  }

  async #read(): Promise<Descriptor[]> {
    const fh = await open(this.#indexPath, 'r');
    let text: string;
    try {
      const { size } = await fh.stat();
      if (size > MAX_INDEX_SIZE) throw new ContentTooLargeError(this.#indexPath, MAX_INDEX_SIZE, size);
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (err) {
      throw new InvalidManifestError('index.json', 'expected valid JSON', { cause: err });
    }
    if (typeof v !== 'object' || v === null || (v as { schemaVersion?: unknown }).schemaVersion !== 2 || !Array.isArray((v as { manifests?: unknown }).manifests)) {
      throw new InvalidManifestError('index.json', 'expected an OCI index with schemaVersion 2 and a manifests array');
    }
    return ((v as { manifests: unknown[] }).manifests).map((m, i) => parseDescriptor('index.json', `manifests[${i}]`, m));
  }

  async #update(fn: (manifests: Descriptor[]) => Descriptor[] | undefined): Promise<void> {
    await withLockFile(`${this.#indexPath}.lock`, async () => {
      const next = fn(await this.#read());
      if (next === undefined) return;
      const body = canonicalJson({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: next });
      const tmp = `${this.#indexPath}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
      const fh = await open(tmp, 'wx', 0o644);
      try {
        await fh.writeFile(body);
        await fh.sync();
      } finally {
        await fh.close();
      }
      crashPoint('image-index-update');
      try {
        await rename(tmp, this.#indexPath);
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        throw err;
      }
      await fsyncDir(this.content.root);
    });
  }

  /** Points `name` (familiar or canonical, no digest) at `image`, replacing any previous target. */
  async tag(name: string, image: StoredImage): Promise<void> {
    await this.tagDescriptor(name, {
      mediaType: image.manifest.mediaType,
      digest: image.manifestDigest,
      size: image.manifestSize,
    });
  }

  /** Like {@link tag} for any manifest or index descriptor already in the store. */
  async tagDescriptor(name: string, desc: Descriptor): Promise<void> {
    const ref = parseImageRef(name);
    if (ref.digest !== undefined) throw new InvalidReferenceError(name, 'expected a tag, found a digest reference (cannot tag by digest)');
    const info = await this.content.info(desc.digest);
    if (info.size !== desc.size) throw new InvalidManifestError(desc.digest, `expected size ${desc.size}, found ${info.size}`);
    const entry: Descriptor = {
      mediaType: desc.mediaType,
      digest: desc.digest,
      size: desc.size,
      annotations: { [REF_NAME_ANNOTATION]: ref.canonical, [CREATED_ANNOTATION]: new Date().toISOString() },
    };
    if (desc.platform !== undefined) entry.platform = desc.platform;
    // Already so (a fully cached rebuild): nothing to write, and the name keeps its first tagging time.
    const same = (m: Descriptor): boolean =>
      m.annotations?.[REF_NAME_ANNOTATION] === ref.canonical && m.digest === desc.digest && m.mediaType === desc.mediaType && m.size === desc.size && canonicalJson(m.platform ?? null) === canonicalJson(desc.platform ?? null);
    if ((await this.#read()).some(same)) return;
    await this.#update((ms) => (ms.some(same) ? undefined : [...ms.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] !== ref.canonical), entry]));
  }

  /**
   * The image a name points to: a familiar or canonical name ("hello", "hello:v1"),
   * a digest reference ("hello@sha256:…"), or a bare manifest digest. Undefined when
   * nothing matches; an invalid name throws InvalidReferenceError.
   */
  async resolve(name: string, opts: { platform?: Platform } = {}): Promise<StoredImage | undefined> {
    let digest: Digest | undefined;
    if (isDigest(name)) {
      digest = name;
    } else {
      const ref = parseImageRef(name);
      if (ref.digest !== undefined) digest = ref.digest;
      else digest = (await this.#read()).find((m) => m.annotations?.[REF_NAME_ANNOTATION] === ref.canonical)?.digest;
    }
    if (digest === undefined || !(await this.content.has(digest))) return undefined;
    return readImage(this.content, digest, opts);
  }

  /** Like {@link resolve}, throwing ImageNotFoundError. */
  async get(name: string, opts: { platform?: Platform } = {}): Promise<StoredImage> {
    const img = await this.resolve(name, opts);
    if (img === undefined) throw new ImageNotFoundError(name);
    return img;
  }

  /** Every named image, sorted by name. */
  async list(): Promise<ImageListEntry[]> {
    const out: ImageListEntry[] = [];
    for (const m of await this.#read()) {
      const name = m.annotations?.[REF_NAME_ANNOTATION];
      if (name === undefined) continue;
      let familiar = name;
      try {
        familiar = parseImageRef(name).familiar;
      } catch (err) {
        if (!(err instanceof InvalidReferenceError)) throw err; // a layout written by another tool: keep its raw name
      }
      const img = await readImage(this.content, m.digest);
      const e: ImageListEntry = { name, familiar, digest: m.digest, size: img.size };
      const created = m.annotations?.[CREATED_ANNOTATION] ?? img.config.created;
      if (created !== undefined) e.created = created;
      out.push(e);
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Removes a name; true when it existed. Blobs stay until GC. */
  async untag(name: string): Promise<boolean> {
    const ref = parseImageRef(name);
    let removed = false;
    await this.#update((ms) => {
      const next = ms.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] !== ref.canonical);
      removed = next.length !== ms.length;
      return removed ? next : undefined;
    });
    return removed;
  }

  /** Every blob reachable from index.json (manifests, indexes, configs, layers), for GC. */
  async referencedBlobs(): Promise<Set<Digest>> {
    const seen = new Set<Digest>();
    const visit = async (d: Descriptor, depth: number): Promise<void> => {
      if (seen.has(d.digest)) return;
      seen.add(d.digest);
      if (depth > 8 || !(await this.content.has(d.digest))) return;
      const { value } = await readJsonBlob(this.content, d.digest);
      const doc = value as { manifests?: unknown; config?: unknown; layers?: unknown; mediaType?: unknown };
      if (INDEX_TYPES.has(d.mediaType) || Array.isArray(doc.manifests)) {
        for (const [i, m] of ((doc.manifests as unknown[]) ?? []).entries()) await visit(parseDescriptor(d.digest, `manifests[${i}]`, m), depth + 1);
        return;
      }
      if (doc.config !== undefined) seen.add(parseDescriptor(d.digest, 'config', doc.config).digest);
      if (Array.isArray(doc.layers)) for (const [i, l] of doc.layers.entries()) seen.add(parseDescriptor(d.digest, `layers[${i}]`, l).digest);
    };
    for (const m of await this.#read()) await visit(m, 0);
    return seen;
  }
}

/** Reads a file as text (used by tests and the loader for small JSON files). */
export async function readSmallFile(path: string, limit: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    if (size > limit) throw new ContentTooLargeError(path, limit, size);
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}

