import type { HistoryEntry, ImageConfigFile } from '@tsbuild/snapshotter';

/** The PATH BuildKit puts into an image whose base sets none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** OCI architecture name of this host. */
export function hostArch(): string {
  switch (process.arch) {
    case 'x64':
      return 'amd64';
    case 'ia32':
      return '386';
    case 'arm64':
      return 'arm64';
    case 'arm':
      return 'arm';
    default:
      return process.arch;
  }
}

/** The config of `FROM scratch`. */
export function emptyConfig(): ImageConfigFile {
  return {
    architecture: hostArch(),
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  };
}

/** A deep copy, so a stage never mutates the config of its base. */
export function cloneConfig(c: ImageConfigFile): ImageConfigFile {
  return structuredClone(c);
}

/** Reads `Env` (KEY=VALUE list) into an ordered map. */
export function envToMap(env: readonly string[] | undefined): Map<string, string> {
  const m = new Map<string, string>();
  for (const kv of env ?? []) {
    const i = kv.indexOf('=');
    if (i < 0) m.set(kv, '');
    else m.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return m;
}

/** Sets one variable in `Env`, keeping the position of an existing entry. */
export function setEnv(c: ImageConfigFile, key: string, value: string): void {
  const env = c.config.Env ? [...c.config.Env] : [];
  const i = env.findIndex((kv) => kv === key || kv.startsWith(`${key}=`));
  if (i >= 0) env[i] = `${key}=${value}`;
  else env.push(`${key}=${value}`);
  c.config.Env = env;
}

export function addHistory(c: ImageConfigFile, entry: HistoryEntry): void {
  c.history = [...(c.history ?? []), entry];
}
