import { UsageError } from '../errors.js';
import { openStore } from './store.js';
import { ago, humanSize, table } from './table.js';

interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

export async function imagesCommand(opts: { format: string }, io: Io): Promise<void> {
  const store = await openStore();
  try {
    const list = await store.images.list();
    if (opts.format === 'json') {
      io.stdout(`${JSON.stringify(list, null, 2)}\n`);
      return;
    }
    const rows = list.map((i) => {
      const fam = i.familiar;
      const at = fam.lastIndexOf(':');
      const repo = at > fam.lastIndexOf('/') ? fam.slice(0, at) : fam;
      const tag = at > fam.lastIndexOf('/') ? fam.slice(at + 1) : '<none>';
      return [repo, tag, i.digest.slice(7, 19), ago(i.created), humanSize(i.size)];
    });
    io.stdout(table(['REPOSITORY', 'TAG', 'DIGEST', 'CREATED', 'SIZE'], rows));
  } finally {
    await store.close();
  }
}

export async function saveCommand(names: string[], opts: { output: string; format: 'docker' | 'oci' }, io: Io): Promise<void> {
  const store = await openStore();
  try {
    const { saveDockerArchive, saveOciArchive } = await import('@tsbuild/snapshotter');
    const images = [];
    for (const n of names) {
      const image = await store.images.resolve(n);
      if (!image) throw new UsageError(`no such image: ${n}`);
      images.push({ image, tags: [n] });
    }
    if (opts.format === 'oci') {
      if (images.length !== 1) throw new UsageError('--format oci saves exactly one image');
      await saveOciArchive(store.content, images[0].image, images[0].tags, opts.output);
    } else {
      await saveDockerArchive(store.content, images, opts.output);
    }
    io.stderr(`saved ${names.join(', ')} to ${opts.output}\n`);
  } finally {
    await store.close();
  }
}

export async function loadCommand(opts: { input: string }, io: Io): Promise<void> {
  const store = await openStore();
  try {
    const { loadArchive } = await import('@tsbuild/snapshotter');
    const loaded = await loadArchive(store.content, store.images, opts.input);
    for (const l of loaded) io.stdout(l.name ? `Loaded image: ${l.name}\n` : `Loaded image ID: ${l.image.configDigest}\n`);
  } finally {
    await store.close();
  }
}

export async function tagCommand(source: string, target: string, io: Io): Promise<void> {
  const store = await openStore();
  try {
    const image = await store.images.resolve(source);
    if (!image) throw new UsageError(`no such image: ${source}`);
    await store.images.tag(target, image);
    void io;
  } finally {
    await store.close();
  }
}

export async function rmiCommand(names: string[], io: Io): Promise<void> {
  const store = await openStore();
  try {
    for (const n of names) {
      if (!(await store.images.untag(n))) throw new UsageError(`no such image: ${n}`);
      io.stdout(`Untagged: ${n}\n`);
    }
  } finally {
    await store.close();
  }
}

export async function inspectCommand(name: string, io: Io): Promise<void> {
  const store = await openStore();
  try {
    const image = await store.images.resolve(name);
    if (!image) throw new UsageError(`no such image: ${name}`);
    let li = 0;
    const history = (image.config.history ?? []).map((h) => {
      const layer = h.empty_layer ? undefined : image.manifest.layers[li++];
      return { ...h, size: layer?.size ?? 0, ...(layer ? { layer: layer.digest } : {}) };
    });
    io.stdout(
      `${JSON.stringify({ name, digest: image.manifestDigest, id: image.configDigest, size: image.size, manifest: image.manifest, config: image.config, history }, null, 2)}\n`,
    );
  } finally {
    await store.close();
  }
}
