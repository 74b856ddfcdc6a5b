import { resolve } from 'node:path';
import type { ImageRuntimeConfig } from '@tsbuild/snapshotter';
import { UsageError } from '../errors.js';
import { openStore } from './store.js';

interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/** Turns `--change` instructions into a runtime config, with Dockerfile syntax. */
export async function changesToConfig(changes: readonly string[]): Promise<ImageRuntimeConfig> {
  const config: ImageRuntimeConfig = {};
  if (changes.length === 0) return config;
  const { parseDockerfile, toStages } = await import('@tsbuild/parser');
  const { stages } = toStages(parseDockerfile(`FROM scratch\n${changes.join('\n')}\n`, { file: '--change' }).ast);
  for (const i of stages[0].instructions) {
    switch (i.kind) {
      case 'ENV':
        for (const { key, value } of i.pairs) {
          config.Env = [...(config.Env ?? []).filter((kv) => !kv.startsWith(`${key}=`)), `${key}=${value}`];
        }
        break;
      case 'CMD':
        config.Cmd = i.cmd.form === 'exec' ? [...i.cmd.args] : ['/bin/sh', '-c', i.cmd.args.join(' ')];
        break;
      case 'ENTRYPOINT':
        config.Entrypoint = i.cmd.form === 'exec' ? [...i.cmd.args] : ['/bin/sh', '-c', i.cmd.args.join(' ')];
        break;
      case 'WORKDIR':
        config.WorkingDir = i.path;
        break;
      case 'USER':
        config.User = i.user;
        break;
      case 'LABEL':
        config.Labels = { ...(config.Labels ?? {}) };
        for (const { key, value } of i.pairs) config.Labels[key] = value;
        break;
      default:
        throw new UsageError(`--change ${i.kind} is not supported: use ENV, CMD, ENTRYPOINT, WORKDIR, USER or LABEL`);
    }
  }
  return config;
}

export async function importCommand(dir: string, name: string | undefined, opts: { change: string[] }, io: Io): Promise<void> {
  const config = await changesToConfig(opts.change);
  const store = await openStore();
  try {
    const { importRootfs } = await import('@tsbuild/solver');
    const image = await importRootfs(store, resolve(dir), { config, ...(name ? { tags: [name] } : {}) });
    io.stdout(`${image.configDigest}\n`);
  } finally {
    await store.close();
  }
}
