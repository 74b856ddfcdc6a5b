import assert from 'node:assert/strict';
import { readFile, readdir, writeFile, mkdir, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { after, describe, it } from 'node:test';
import tar from 'tar-stream';
import { Ajv } from 'ajv';
import AjvDraft04 from 'ajv-draft-04';
import { ContentStore } from '../content/content-store.js';
import { sha256 } from '../content/digest.js';
import { ContentTooLargeError, InvalidArchiveError } from '../errors.js';
import { loadArchive } from './archive-load.js';
import { saveDockerArchive, saveOciArchive, writeOciLayout } from './archive-save.js';
import { readImage, writeImage } from './image.js';
import { ImageStore } from './image-store.js';
import { MediaTypes } from './types.js';
import { writeLayer } from '../layer/index.js';
import { prngBytes, textBytes } from '../layer/test-helpers/tools.js';
import { hostPlatform } from './platform.js';
import { buildBusyboxImage } from './test-helpers/busybox-image.js';
import { removeAll, tempDir } from './test-helpers/fixtures.js';
import { DOCKER, DOCKER_ENV, ensureDocker, requireTool, run } from './test-helpers/system.js';

const dirs: string[] = [];
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
after(() => removeAll(dirs));

async function fresh(): Promise<{ content: ContentStore; images: ImageStore; dir: string }> {
  const dir = await tempDir('tsbuild-archive-', dirs);
  const content = await ContentStore.open(join(dir, 'store'));
  return { content, images: await ImageStore.open(content), dir };
}

async function tarOf(entries: { name: string; body?: string | Buffer; type?: tar.Headers['type']; linkname?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    await new Promise<void>((res, rej) => {
      const cb = (err?: Error | null) => (err ? rej(err) : res());
      const h: tar.Headers = { name: e.name, type: e.type ?? 'file', mode: 0o644 };
      if (e.linkname !== undefined) h.linkname = e.linkname;
      if (e.body !== undefined) pack.entry(h, typeof e.body === 'string' ? Buffer.from(e.body) : e.body, cb);
      else pack.entry(h, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** The OCI image-spec schemas, read at test time from the shared conformance data. */
async function ociValidator() {
  const here = dirname(fileURLToPath(import.meta.url));
  const schemaDir = join(here, '..', '..', '..', '..', '..', 'shared', 'conformance', 'oci-image-spec-schema');
  const ajv = new AjvDraft04({ allErrors: true, strict: false, validateFormats: false });
  // Nested "id"s would be registered once per alias URL and clash; the alias URLs below
  // already cover every base those ids set, so drop them (the root id is kept).
  const stripNestedIds = (v: unknown, root: boolean): unknown => {
    if (Array.isArray(v)) return v.map((x) => stripNestedIds(x, false));
    if (typeof v !== 'object' || v === null) return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (root || k !== 'id' || typeof x !== 'string') out[k] = k === 'properties' || k === 'definitions' ? Object.fromEntries(Object.entries(x as object).map(([pk, pv]) => [pk, stripNestedIds(pv, false)])) : stripNestedIds(x, false);
    return out;
  };
  const load = async (f: string) => stripNestedIds(JSON.parse(await readFile(join(schemaDir, f), 'utf8')), true) as Record<string, unknown>;
  const aliases: Record<string, string[]> = {
    'defs.json': ['https://opencontainers.org/schema/defs.json', 'https://opencontainers.org/schema/image/defs.json', 'https://opencontainers.org/schema/image/descriptor/defs.json'],
    'defs-descriptor.json': ['https://opencontainers.org/schema/image/descriptor/mediaType', 'https://opencontainers.org/schema/defs-descriptor.json', 'https://opencontainers.org/schema/image/defs-descriptor.json'],
    'content-descriptor.json': ['https://opencontainers.org/schema/descriptor', 'https://opencontainers.org/schema/image/content-descriptor.json'],
  };
  for (const [file, urls] of Object.entries(aliases)) {
    const schema = await load(file);
    for (const url of urls) {
      const { id: _id, ...rest } = schema;
      ajv.addSchema(rest, url);
    }
  }
  const get = async (f: string) => ajv.compile(await load(f));
  return {
    manifest: await get('image-manifest-schema.json'),
    index: await get('image-index-schema.json'),
    config: await get('config-schema.json'),
    layout: await get('image-layout-schema.json'),
  };
}

describe('archives', () => {
  it('what we write validates against the OCI image-spec schemas', async () => {
    const { content, dir } = await fresh();
    const img = await buildBusyboxImage(content);
    const v = await ociValidator();
    const check = (fn: Awaited<ReturnType<typeof ociValidator>>['manifest'], doc: unknown, what: string) => {
      assert.ok(fn(doc), `${what}: ${JSON.stringify(fn.errors)}`);
    };
    check(v.manifest, JSON.parse((await content.readBlob(img.manifestDigest)).toString()), 'manifest');
    check(v.config, JSON.parse((await content.readBlob(img.configDigest)).toString()), 'config');
    const layout = join(dir, 'layout');
    await writeOciLayout(layout, content, img, ['busybox:test']);
    check(v.index, JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')), 'index.json');
    check(v.layout, JSON.parse(await readFile(join(layout, 'oci-layout'), 'utf8')), 'oci-layout');
    // the validator is not vacuous
    assert.equal(v.manifest({ schemaVersion: 2, config: {}, layers: [] }), false);
    assert.equal(v.layout({ imageLayoutVersion: '2.0.0' }), false);
    assert.equal(v.manifest({ schemaVersion: 2, config: { mediaType: 'a/b', size: 1, digest: 'bad' }, layers: [] }), false);
  });

  it('docker-archive round-trips through loadArchive with the same manifest digest', async () => {
    const a = await fresh();
    const img = await buildBusyboxImage(a.content);
    const file = join(a.dir, 'img.tar');
    await saveDockerArchive(a.content, [{ image: img, tags: ['rt:v1', 'example.com/x/rt:v2'] }], file);
    const b = await fresh();
    const loaded = await loadArchive(b.content, b.images, file);
    assert.deepEqual(loaded.map((l) => [l.name, l.image.manifestDigest]).sort(), [
      ['docker.io/library/rt:v1', img.manifestDigest],
      ['example.com/x/rt:v2', img.manifestDigest],
    ]);
    assert.equal((await b.images.resolve('rt:v1'))?.manifestDigest, img.manifestDigest);
    // Without the OCI index (pure docker-archive), the manifest is rebuilt identically.
    const c = await fresh();
    const members = new Map<string, Buffer>();
    const ex = tar.extract();
    const reading = (async () => {
      for await (const e of ex) {
        const chunks: Buffer[] = [];
        for await (const ch of e) chunks.push(ch as Buffer);
        if (e.header.type === 'file') members.set(e.header.name, Buffer.concat(chunks));
      }
    })();
    ex.end(await readFile(file));
    await reading;
    assert.ok(members.has('manifest.json') && members.has('index.json'));
    const dockerOnly = await tarOf([...members].filter(([n]) => n !== 'index.json' && n !== 'oci-layout' && n !== img.manifestDigest.replace('sha256:', 'blobs/sha256/')).map(([name, body]) => ({ name, body })));
    const loaded2 = await loadArchive(c.content, c.images, Readable_from(dockerOnly));
    assert.equal(loaded2[0]!.image.manifestDigest, img.manifestDigest);
    // gzip-compressed archive input
    const d = await fresh();
    const loaded3 = await loadArchive(d.content, d.images, Readable_from(gzipSync(dockerOnly)));
    assert.equal(loaded3[0]!.image.manifestDigest, img.manifestDigest);
  });

  it('OCI archive and layout: round trip, skopeo and umoci accept them', async (t) => {
    const a = await fresh();
    const img = await buildBusyboxImage(a.content);
    const file = join(a.dir, 'oci.tar');
    await saveOciArchive(a.content, img, ['ocitest:v1'], file);
    const layout = join(a.dir, 'layout');
    await writeOciLayout(layout, a.content, img, ['ocitest:v1']);
    const b = await fresh();
    assert.equal((await loadArchive(b.content, b.images, file))[0]!.image.manifestDigest, img.manifestDigest);
    const c = await fresh();
    const fromDir = await loadArchive(c.content, c.images, layout);
    assert.deepEqual(fromDir.map((l) => [l.name, l.image.manifestDigest]), [['docker.io/library/ocitest:v1', img.manifestDigest]]);
    // as `docker save` and containerd's export name it: ref.name is the tag, the full name beside it
    const indexOf = async (dir: string) => (JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: { annotations?: Record<string, string> }[] }).manifests.map((m) => m.annotations);
    assert.deepEqual(await indexOf(layout), [{ 'io.containerd.image.name': 'docker.io/library/ocitest:v1', 'org.opencontainers.image.ref.name': 'v1' }]);
    // the same tag of another repository is another entry; writing a name again replaces only its own
    const layout2 = join(a.dir, 'layout2');
    await writeOciLayout(layout2, a.content, img, ['ocitest:v1']);
    await writeOciLayout(layout2, a.content, img, ['other:v1']);
    await writeOciLayout(layout2, a.content, img, ['ocitest:v1']);
    assert.deepEqual((await indexOf(layout2)).map((x) => x?.['io.containerd.image.name']), ['docker.io/library/other:v1', 'docker.io/library/ocitest:v1']);
    // layouts of other tools: a bare tag in ref.name (skopeo, containerd without its own
    // annotation) names no image (it is not `docker.io/library/v1:latest`) but is reported;
    // a full reference or name:tag there (older tsbuild, some tools) still names the image
    for (const [refName, name] of [
      ['v1', undefined],
      ['latest', undefined],
      ['docker.io/library/old:2', 'docker.io/library/old:2'],
      ['busybox:1', 'docker.io/library/busybox:1'],
      ['localhost:5000/a/b:c', 'localhost:5000/a/b:c'],
    ] as const) {
      const foreign = join(a.dir, `foreign-${refName.replace(/\W/g, '_')}`);
      await writeOciLayout(foreign, a.content, img, ['ocitest:v1']);
      const idx = JSON.parse(await readFile(join(foreign, 'index.json'), 'utf8')) as { manifests: { annotations: Record<string, string> }[] };
      idx.manifests[0]!.annotations = { 'org.opencontainers.image.ref.name': refName };
      await writeFile(join(foreign, 'index.json'), JSON.stringify(idx));
      const d = await fresh();
      const [got] = await loadArchive(d.content, d.images, foreign);
      assert.equal(got!.name, name, refName);
      assert.equal(got!.refName, refName);
      assert.equal(got!.image.manifestDigest, img.manifestDigest);
      assert.equal((await d.images.list()).length, name === undefined ? 0 : 1, refName);
    }

    if (requireTool(t, '/usr/bin/skopeo', 'skopeo')) {
      const r = run(['skopeo', 'inspect', `oci-archive:${file}`]);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { Digest: string; Layers: string[] };
      assert.equal(out.Digest, img.manifestDigest);
      assert.deepEqual(out.Layers, [img.manifest.layers[0]!.digest]);
      const r2 = run(['skopeo', 'inspect', '--raw', `oci:${layout}:v1`]);
      assert.equal(r2.code, 0, r2.stderr);
      assert.equal(sha256(r2.stdout), img.manifestDigest);
    }
    if (requireTool(t, '/usr/bin/umoci', 'umoci')) {
      const r = run(['umoci', 'stat', '--json', '--image', `${layout}:v1`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /tsbuild test: busybox-static rootfs/);
      const bundle = join(a.dir, 'bundle');
      const u = run(['umoci', 'raw', 'unpack', '--rootless', '--image', `${layout}:v1`, bundle]);
      assert.equal(u.code, 0, u.stderr);
      assert.deepEqual((await readdir(join(bundle, 'bin'))).sort(), ['busybox', 'cat', 'echo', 'sh']);
    }
  });

  it('a zstd layer (one frame per entropy run) decodes with skopeo, i.e. Go klauspost/compress as containerd uses, to its diffID', async (t) => {
    const a = await fresh();
    // text, random, text: compressed frames around a raw one
    const layerTar = await tarOf([
      { name: 'a.txt', body: textBytes(1, 300_000) },
      { name: 'random.bin', body: prngBytes(2, 200_000) },
      { name: 'b.txt', body: textBytes(3, 100_000) },
    ]);
    const layer = await writeLayer(Readable.from([layerTar]), a.content, { compression: 'zstd' });
    const blob = await readFile(a.content.blobPath(layer.digest));
    let frames = 0;
    for (let i = blob.indexOf(ZSTD_MAGIC); i >= 0; i = blob.indexOf(ZSTD_MAGIC, i + 4)) frames++;
    assert.ok(frames >= 3, `expected several frames, found ${frames}`);
    const img = await writeImage(a.content, {
      config: { architecture: hostPlatform().architecture, os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] } },
      layers: [layer],
    });
    const layout = join(a.dir, 'layout');
    await writeOciLayout(layout, a.content, img, ['zstdtest:v1']);
    if (requireTool(t, '/usr/bin/skopeo', 'skopeo')) {
      const out = join(a.dir, 'decompressed');
      const r = run(['skopeo', 'copy', '--dest-decompress', `oci:${layout}:v1`, `dir:${out}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok((await readFile(join(out, layer.diffId.slice('sha256:'.length)))).equals(layerTar), 'skopeo decoded another tar');
    }
  });

  it('docker load accepts the docker-archive and the image runs; docker save loads back', async (t) => {
    if (!(await ensureDocker(t))) return;
    const a = await fresh();
    const img = await buildBusyboxImage(a.content);
    const tag = `tsbuild-test/busybox:${process.pid}`;
    const file = join(a.dir, 'img.tar');
    await saveDockerArchive(a.content, [{ image: img, tags: [tag] }], file);
    try {
      const load = run([DOCKER, 'load', '-i', file], { env: DOCKER_ENV });
      assert.equal(load.code, 0, load.stderr);
      assert.match(load.stdout, new RegExp(`Loaded image: ${tag.replace(/[/.]/g, '\\$&')}`));
      const id = run([DOCKER, 'image', 'inspect', '-f', '{{.Id}}', tag], { env: DOCKER_ENV });
      assert.equal(id.stdout.trim(), img.configDigest);
      const r = run([DOCKER, 'run', '--rm', '--network', 'host', tag, 'echo', 'hi'], { env: DOCKER_ENV });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'hi\n');
      // docker 20.10's own (legacy, layer.tar) docker save output loads into our store.
      const saved = join(a.dir, 'docker-saved.tar');
      const s = run([DOCKER, 'save', '-o', saved, tag], { env: DOCKER_ENV });
      assert.equal(s.code, 0, s.stderr);
      const b = await fresh();
      const loaded = await loadArchive(b.content, b.images, saved);
      assert.equal(loaded.length, 1);
      assert.equal(loaded[0]!.name, `docker.io/${tag}`);
      assert.equal(loaded[0]!.image.configDigest, img.configDigest);
      assert.equal(loaded[0]!.image.manifest.layers[0]!.mediaType, MediaTypes.ociLayer);
      assert.equal(loaded[0]!.image.manifest.layers[0]!.digest, img.config.rootfs.diff_ids[0]);
    } finally {
      run([DOCKER, 'rmi', '-f', tag], { env: DOCKER_ENV });
    }
  });

  describe('hostile archives are refused', () => {
    const cfg = JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] } });
    const cases: [string, () => Promise<Buffer>, RegExp | (new (...a: never[]) => Error)][] = [
      ['.. in a member name', () => tarOf([{ name: '../evil', body: 'x' }, { name: 'manifest.json', body: '[]' }]), /"\.\." component/],
      ['absolute member name', () => tarOf([{ name: '/etc/passwd', body: 'x' }]), /absolute path/],
      ['symlink leaving the archive', () => tarOf([{ name: 'cfg.json', type: 'symlink', linkname: '../../etc/passwd' }]), /leaves it/],
      ['absolute symlink', () => tarOf([{ name: 'cfg.json', type: 'symlink', linkname: '/etc/passwd' }]), /absolute target/],
      ['manifest entry pointing at a missing member', () => tarOf([{ name: 'manifest.json', body: JSON.stringify([{ Config: '../../etc/passwd', Layers: [] }]) }]), /"\.\." component/],
      ['manifest entry naming a member that is not there', () => tarOf([{ name: 'manifest.json', body: JSON.stringify([{ Config: 'nope.json', Layers: [] }]) }]), /not in the archive/],
      ['blob whose bytes do not match its name', () => tarOf([{ name: `blobs/sha256/${'0'.repeat(64)}`, body: 'x' }]), /does not match its name/],
      ['device member', () => tarOf([{ name: 'dev', type: 'character-device' }]), /found a character-device/],
      ['duplicate member', () => tarOf([{ name: 'a.json', body: cfg }, { name: 'a.json', body: cfg }]), /duplicate/],
      ['oversized manifest.json', () => tarOf([{ name: 'manifest.json', body: Buffer.alloc(5 << 20, 0x20) }]), ContentTooLargeError],
      ['no manifest at all', () => tarOf([{ name: 'a.json', body: cfg }]), /found neither/],
      ['layer that does not match the config', async () => tarOf([
        { name: 'c.json', body: JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [sha256('other')] } }) },
        { name: 'l/layer.tar', body: Buffer.alloc(1024) },
        { name: 'manifest.json', body: JSON.stringify([{ Config: 'c.json', RepoTags: ['x:y'], Layers: ['l/layer.tar'] }]) },
      ]), /expected diff_id/],
    ];
    for (const [what, make, expected] of cases) {
      it(what, async () => {
        const s = await fresh();
        await assert.rejects(loadArchive(s.content, s.images, Readable_from(await make())), (e: unknown) => {
          if (expected instanceof RegExp) return e instanceof InvalidArchiveError && expected.test(e.message);
          return e instanceof expected;
        });
        assert.deepEqual(await s.images.list(), []);
        assert.deepEqual(await readdir(join(s.content.root, 'ingest')), []);
      });
    }
    it('symlinked blob in a layout dir', async () => {
      const s = await fresh();
      const layout = join(s.dir, 'evil-layout');
      await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
      await writeFile(join(layout, 'index.json'), '{"schemaVersion":2,"manifests":[]}');
      await symlink('/etc/passwd', join(layout, 'blobs', 'sha256', 'a'.repeat(64)));
      await assert.rejects(loadArchive(s.content, s.images, layout), /symlink/);
    });
    it('in-archive symlinks (as in legacy docker save) are followed', async () => {
      const a = await fresh();
      const img = await buildBusyboxImage(a.content, { gzip: false });
      const layer = await a.content.readBlob(img.manifest.layers[0]!.digest);
      const config = await a.content.readBlob(img.configDigest);
      const archive = await tarOf([
        { name: 'cfg.json', body: config },
        { name: 'real/layer.tar', body: layer },
        { name: 'dup/layer.tar', type: 'symlink', linkname: '../real/layer.tar' },
        { name: 'manifest.json', body: JSON.stringify([{ Config: 'cfg.json', RepoTags: ['linked:1'], Layers: ['dup/layer.tar'] }]) },
      ]);
      const b = await fresh();
      const loaded = await loadArchive(b.content, b.images, Readable_from(archive));
      assert.equal(loaded[0]!.image.manifestDigest, img.manifestDigest);
    });
  });

  it('readImage of a loaded image verifies it', async () => {
    const a = await fresh();
    const img = await buildBusyboxImage(a.content);
    assert.deepEqual(await readImage(a.content, img.manifestDigest), img);
  });
});

function Readable_from(buf: Buffer): import('node:stream').Readable {
  return Readable.from([buf]);
}
import { Readable } from 'node:stream';
