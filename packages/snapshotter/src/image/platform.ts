import type { Platform } from './types.js';

const ARCH_ALIASES: Record<string, string> = {
  x86_64: 'amd64',
  'x86-64': 'amd64',
  aarch64: 'arm64',
  armhf: 'arm',
  armel: 'arm',
  i386: '386',
  i686: '386',
};

/** Node's `process.arch` → OCI architecture (and variant). */
export function hostPlatform(): Platform {
  const map: Record<string, Platform> = {
    x64: { os: 'linux', architecture: 'amd64' },
    arm64: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    arm: { os: 'linux', architecture: 'arm', variant: 'v7' },
    ia32: { os: 'linux', architecture: '386' },
    ppc64: { os: 'linux', architecture: 'ppc64le' },
    s390x: { os: 'linux', architecture: 's390x' },
    riscv64: { os: 'linux', architecture: 'riscv64' },
    loong64: { os: 'linux', architecture: 'loong64' },
    mips: { os: 'linux', architecture: 'mips' },
    mipsel: { os: 'linux', architecture: 'mipsle' },
  };
  return map[process.arch] ?? { os: 'linux', architecture: process.arch };
}

/** containerd's normalisation: aliases, arm64 → v8, arm → v7 by default, amd64/v1 → amd64. */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  const architecture = ARCH_ALIASES[p.architecture.toLowerCase()] ?? p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase();
  if (architecture === 'arm64' && (variant === undefined || variant === '' || variant === '8' || variant === 'v8')) variant = 'v8';
  else if (architecture === 'arm' && (variant === undefined || variant === '')) variant = 'v7';
  else if (architecture === 'arm' && /^[5-8]$/.test(variant ?? '')) variant = `v${variant}`;
  else if (architecture === 'amd64' && (variant === 'v1' || variant === '')) variant = undefined;
  const out: Platform = { os, architecture };
  if (variant !== undefined) out.variant = variant;
  return out;
}

/** "os/arch[/variant]" */
export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter((x) => x !== undefined && x !== '').join('/');
}

/** Parses "os/arch[/variant]". */
export function parsePlatform(s: string): Platform {
  const [os, architecture, variant, ...extra] = s.split('/');
  if (os === undefined || os === '' || architecture === undefined || architecture === '' || extra.length > 0) {
    throw new RangeError(`invalid platform ${JSON.stringify(s)}: expected os/arch[/variant]`);
  }
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

/**
 * How well `candidate` serves `want`: undefined when it cannot run, otherwise a rank
 * (0 is best). An arm/v7 request also accepts v6 and v5 images, ranked lower, as
 * containerd does.
 */
export function platformRank(want: Platform, candidate: Platform): number | undefined {
  const w = normalizePlatform(want);
  const c = normalizePlatform(candidate);
  if (w.os !== c.os || w.architecture !== c.architecture) return undefined;
  if (w.variant === c.variant) return 0;
  if (w.architecture === 'arm' && w.variant !== undefined && c.variant !== undefined) {
    const wv = Number(w.variant.slice(1));
    const cv = Number(c.variant.slice(1));
    if (cv < wv && cv >= 5) return wv - cv;
  }
  return undefined;
}
