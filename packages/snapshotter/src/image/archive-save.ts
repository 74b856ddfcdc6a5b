import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, constants as fsc, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { fsyncDir, createFileIfAbsent, type ContentStore } from '../content/content-store.js';
import { digestHex, type Digest } from '../content/digest.js';
import { canonicalJson } from './canonical-json.js';
import { parseImageRef } from './reference.js';
import { CONTAINERD_NAME_ANNOTATION, MediaTypes, REF_NAME_ANNOTATION, type Descriptor, type StoredImage } from './types.js';

/** One image to put in an archive, with the names it should carry. */
export interface ArchiveImage {
  image: StoredImage;
  tags: string[];
}

const OCI_LAYOUT = '{"imageLayoutVersion":"1.0.0"}';
const EPOCH = new Date(0);

function blobsOf(image: StoredImage): Descriptor[] {
  return [
    { mediaType: image.manifest.mediaType, digest: image.manifestDigest, size: image.manifestSize },
    image.manifest.config,
    ...image.manifest.layers,
  ];
}

/**
 * The OCI `ref.name` of a tagged image, as containerd's export (BuildKit's oci exporter)
 * and `docker save` write it: the reference without its repository (`v1` of
 * `docker.io/library/app:v1`; `@sha256:…` after a digest); the full name goes in
 * `io.containerd.image.name`, which is what loaders (ours included) register.
 */
function ociRefName(t: string): { canonical: string; refName: string } {
  const r = parseImageRef(t);
  const refName = (r.tag ?? '') + (r.digest === undefined ? '' : `@${r.digest}`);
  return { canonical: r.canonical, refName };
}

function indexEntries(images: readonly ArchiveImage[]): Descriptor[] {
  const out: Descriptor[] = [];
  for (const { image, tags } of images) {
    const base = { mediaType: image.manifest.mediaType, digest: image.manifestDigest, size: image.manifestSize };
    if (tags.length === 0) out.push(base);
    for (const t of tags) {
      const { canonical, refName } = ociRefName(t);
      out.push({ ...base, annotations: { [CONTAINERD_NAME_ANNOTATION]: canonical, [REF_NAME_ANNOTATION]: refName } });
    }
  }
  return out;
}

function ociIndexJson(entries: readonly Descriptor[]): string {
  return canonicalJson({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: entries });
}

/** Runs `fn` to fill a tar pack piped into `sink`; a failure destroys the pack and rethrows. */
async function packInto(sink: Writable, fn: (pack: tar.Pack) => Promise<void>): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, sink);
  try {
    await fn(pack);
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
    await done.catch(() => undefined);
    throw err;
  }
  await done;
}

/** Writes the tar to `out` (a stream, or a path written through a temp file and renamed). */
async function withOutput(out: Writable | string, fn: (pack: tar.Pack) => Promise<void>): Promise<void> {
  if (typeof out !== 'string') return packInto(out, fn);
  const tmp = `${out}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const file = createWriteStream(tmp, { flags: 'wx', highWaterMark: 1 << 20 });
  try {
    await packInto(file, fn);
    const fh = await open(tmp, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, out);
    await fsyncDir(dirname(out));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

function addBytes(pack: tar.Pack, name: string, bytes: string | Buffer): Promise<void> {
  const buf = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  return new Promise((resolve, reject) => {
    pack.entry({ name, size: buf.length, mode: 0o644, mtime: EPOCH, uid: 0, gid: 0 }, buf, (err) => (err ? reject(err) : resolve()));
  });
}

function addDir(pack: tar.Pack, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name, type: 'directory', mode: 0o755, mtime: EPOCH, uid: 0, gid: 0 }, (err) => (err ? reject(err) : resolve()));
  });
}

/** Streams one blob into the tar (never buffers it whole). */
async function addBlob(pack: tar.Pack, store: ContentStore, d: Descriptor): Promise<void> {
  const info = await store.info(d.digest);
  let settle!: (err?: Error | null) => void;
  const entryDone = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve());
  });
  const entry = pack.entry(
    { name: `blobs/sha256/${digestHex(d.digest)}`, size: info.size, mode: 0o644, mtime: EPOCH, uid: 0, gid: 0 },
    (err) => settle(err),
  );
  for await (const chunk of store.createReadStream(d.digest)) {
    if (!entry.write(chunk as Buffer)) await new Promise<void>((r) => entry.once('drain', () => r()));
  }
  entry.end(undefined);
  await entryDone;
}

async function addLayoutAndBlobs(pack: tar.Pack, store: ContentStore, images: readonly ArchiveImage[]): Promise<void> {
  await addDir(pack, 'blobs');
  await addDir(pack, 'blobs/sha256');
  const seen = new Set<Digest>();
  const all = images.flatMap((i) => blobsOf(i.image)).filter((d) => !seen.has(d.digest) && seen.add(d.digest));
  all.sort((a, b) => (a.digest < b.digest ? -1 : 1));
  for (const d of all) await addBlob(pack, store, d);
  await addBytes(pack, 'oci-layout', OCI_LAYOUT);
  await addBytes(pack, 'index.json', ociIndexJson(indexEntries(images)));
}

/**
 * Writes a docker-archive tar (`docker save` format, as Docker 25+ writes it): every
 * blob under `blobs/sha256/<hex>` (layers exactly as stored, compressed or not —
 * `docker load` decompresses them), `manifest.json` with Config/RepoTags/Layers, and
 * an OCI `index.json` + `oci-layout` so the same file is also an OCI image layout.
 * Blobs are streamed, never held in memory.
 */
export async function saveDockerArchive(store: ContentStore, images: readonly ArchiveImage[], out: Writable | string): Promise<void> {
  const manifest = images.map(({ image, tags }) => ({
    Config: `blobs/sha256/${digestHex(image.configDigest)}`,
    RepoTags: tags.map((t) => parseImageRef(t).familiar),
    Layers: image.manifest.layers.map((l) => `blobs/sha256/${digestHex(l.digest)}`),
  }));
  await withOutput(out, async (pack) => {
    await addLayoutAndBlobs(pack, store, images);
    await addBytes(pack, 'manifest.json', JSON.stringify(manifest));
  });
}

/** Writes an OCI image layout as a tar (`oci-archive:`), one index entry per tag. */
export async function saveOciArchive(store: ContentStore, image: StoredImage, tags: readonly string[], out: Writable | string): Promise<void> {
  await withOutput(out, (pack) => addLayoutAndBlobs(pack, store, [{ image, tags: [...tags] }]));
}

/**
 * Writes (or adds to) an OCI image layout directory: blobs are copied (reflinked where
 * the filesystem allows), and `index.json` gains one entry per tag, replacing entries
 * with the same ref name.
 */
export async function writeOciLayout(dir: string, store: ContentStore, image: StoredImage, tags: readonly string[]): Promise<void> {
  const blobDir = join(dir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  await createFileIfAbsent(join(dir, 'oci-layout'), OCI_LAYOUT);
  for (const d of blobsOf(image)) {
    const target = join(blobDir, digestHex(d.digest));
    const exists = await stat(target).then((s) => s.isFile(), () => false);
    if (exists) continue;
    const tmp = `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
    try {
      if ((await store.virtualBlob(d.digest)) === undefined) {
        await copyFile(store.blobPath(d.digest), tmp, fsc.COPYFILE_FICLONE);
      } else {
        // regenerated and verified as it is read: a mismatch fails before the rename
        await pipeline(store.createReadStream(d.digest), createWriteStream(tmp, { flags: 'wx' }));
      }
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await rename(tmp, target);
  }
  await fsyncDir(blobDir);
  const indexPath = join(dir, 'index.json');
  let existing: Descriptor[] = [];
  try {
    const v = JSON.parse(await readFile(indexPath, 'utf8')) as { manifests?: Descriptor[] };
    existing = Array.isArray(v.manifests) ? v.manifests : [];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const added = indexEntries([{ image, tags: [...tags] }]);
  // an entry is the same name when its full name is (ref.name alone is only the tag; an
  // entry without the containerd name, written by another tool, is matched by ref.name)
  const fullNames = new Set(added.map((d) => d.annotations?.[CONTAINERD_NAME_ANNOTATION]).filter((n) => n !== undefined));
  const refNames = new Set(added.map((d) => d.annotations?.[REF_NAME_ANNOTATION]).filter((n) => n !== undefined));
  const kept = existing.filter((d) => {
    const full = d.annotations?.[CONTAINERD_NAME_ANNOTATION];
    if (full !== undefined) return !fullNames.has(full);
    const n = d.annotations?.[REF_NAME_ANNOTATION];
    return n === undefined ? d.digest !== image.manifestDigest : !refNames.has(n);
  });
  const tmp = `${indexPath}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const fh = await open(tmp, 'wx', 0o644);
  try {
    await fh.writeFile(ociIndexJson([...kept, ...added]));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, indexPath);
  await fsyncDir(dir);
}

