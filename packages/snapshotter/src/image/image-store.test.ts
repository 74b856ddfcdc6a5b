import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ContentStore } from '../content/content-store.js';
import { InvalidReferenceError } from '../errors.js';
import { writeImage } from './image.js';
import { ImageStore } from './image-store.js';
import { withLockFile } from './lock-file.js';
import { baseConfig, removeAll, storeGzipLayer, tempDir, tinyTar } from './test-helpers/fixtures.js';

const dirs: string[] = [];
after(() => removeAll(dirs));

async function setup() {
  const content = await ContentStore.open(join(await tempDir('tsbuild-images-', dirs), 's'));
  const images = await ImageStore.open(content);
  const img = await writeImage(content, { config: baseConfig(), layers: [await storeGzipLayer(content, tinyTar('f', 'x'))] });
  return { content, images, img };
}

describe('ImageStore', () => {
  it('tags, resolves, lists, untags', async () => {
    const { content, images, img } = await setup();
    await images.tag('hello', img);
    await images.tag('example.com/team/app:v1', img);
    assert.equal((await images.resolve('hello'))?.manifestDigest, img.manifestDigest);
    assert.equal((await images.resolve('hello:latest'))?.manifestDigest, img.manifestDigest);
    assert.equal((await images.resolve('docker.io/library/hello:latest'))?.manifestDigest, img.manifestDigest);
    assert.equal((await images.resolve(img.manifestDigest))?.manifestDigest, img.manifestDigest);
    assert.equal((await images.resolve(`hello@${img.manifestDigest}`))?.manifestDigest, img.manifestDigest);
    assert.equal(await images.resolve('hello:v2'), undefined);
    await assert.rejects(images.resolve('Bad Name'), InvalidReferenceError);
    await assert.rejects(images.tag(`x@${img.manifestDigest}`, img), InvalidReferenceError);
    const list = await images.list();
    assert.deepEqual(list.map((e) => [e.name, e.familiar, e.digest, e.size]), [
      ['docker.io/library/hello:latest', 'hello:latest', img.manifestDigest, img.size],
      ['example.com/team/app:v1', 'example.com/team/app:v1', img.manifestDigest, img.size],
    ]);
    assert.ok(list.every((e) => typeof e.created === 'string'));
    const index = JSON.parse(await readFile(join(content.root, 'index.json'), 'utf8'));
    assert.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], 'docker.io/library/hello:latest');
    const refs = await images.referencedBlobs();
    assert.deepEqual([...refs].sort(), [img.manifestDigest, img.configDigest, img.manifest.layers[0]!.digest].sort());
    assert.equal(await images.untag('hello'), true);
    assert.equal(await images.untag('hello'), false);
    assert.equal(await images.resolve('hello'), undefined);
    // retag moves the name
    const img2 = await writeImage(content, { config: { ...baseConfig(), author: 'me' }, layers: [] });
    await images.tag('example.com/team/app:v1', img2);
    assert.equal((await images.resolve('example.com/team/app:v1'))?.manifestDigest, img2.manifestDigest);
    assert.equal((await images.list()).length, 1);
  });

  it('recovers a stale lock left by a dead process', async () => {
    const { content, images, img } = await setup();
    await writeFile(join(content.root, 'index.json.lock'), '999999999 deadbeef\n');
    await images.tag('after-crash', img);
    assert.ok(await images.resolve('after-crash'));
  });

  it('breaks a lock taken in another boot, even when its pid is alive again (T33)', async () => {
    const d = await tempDir('tsbuild-lock-', dirs);
    // what a power cut can leave: a lock naming a pid that a process of this boot now has
    await symlink(`${process.pid} an-earlier-boot 0123456789ab`, join(d, 'l'));
    let ran = false;
    await withLockFile(join(d, 'l'), async () => {
      ran = true;
      assert.match(await readlink(join(d, 'l')), new RegExp(`^${process.pid} \\S+ [0-9a-f]{12}$`));
    }, 2000);
    assert.ok(ran);
    await assert.rejects(readlink(join(d, 'l')), (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
  });

  it('serialises in-process lock holders', async () => {
    const d = await tempDir('tsbuild-lock-', dirs);
    let inside = 0;
    let max = 0;
    await Promise.all(Array.from({ length: 20 }, () => withLockFile(join(d, 'l'), async () => {
      inside++;
      max = Math.max(max, inside);
      await new Promise((r) => setTimeout(r, 1));
      inside--;
    })));
    assert.equal(max, 1);
  });

  it('loses no tags when two processes tag at once', async () => {
    const { content, img } = await setup();
    const N = 25;
    const script = `
      import { ContentStore } from ${JSON.stringify(new URL('../content/content-store.ts', import.meta.url).href)};
      import { ImageStore } from ${JSON.stringify(new URL('./image-store.ts', import.meta.url).href)};
      import { readImage } from ${JSON.stringify(new URL('./image.ts', import.meta.url).href)};
      const [root, prefix, n, digest] = process.argv.slice(1);
      const content = await ContentStore.open(root);
      const images = await ImageStore.open(content);
      const img = await readImage(content, digest);
      await Promise.all(Array.from({ length: Number(n) }, (_, i) => images.tag(prefix + '-' + i, img)));`;
    const run = (prefix: string) => new Promise<void>((resolve, reject) => {
      const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, content.root, prefix, String(N), img.manifestDigest], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      p.stderr.on('data', (c: Buffer) => (err += c.toString()));
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`child ${prefix} exited ${code}: ${err}`))));
    });
    await Promise.all([run('a'), run('b')]);
    const names = (await (await ImageStore.open(content)).list()).map((e) => e.familiar).sort();
    const want = [...Array.from({ length: N }, (_, i) => `a-${i}:latest`), ...Array.from({ length: N }, (_, i) => `b-${i}:latest`)].sort();
    assert.deepEqual(names, want);
  });
});
