import type { BuildStore } from '@tsbuild/solver';

/** Opens the store at `$TSBUILD_ROOT` (or the default location). */
export async function openStore(): Promise<BuildStore> {
  const { BuildStore: Store, defaultStoreRoot } = await import('@tsbuild/solver');
  return Store.open(defaultStoreRoot());
}
