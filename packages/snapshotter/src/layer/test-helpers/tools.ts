import { spawnSync } from 'node:child_process';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { TestContext } from 'node:test';

/**
 * True when `tool` can run. When it cannot: under CI (CI=true) or as root the test
 * fails naming the Debian package to install; a non-root developer run skips with the
 * reason printed.
 */
export function requireTool(t: TestContext, tool: string, debianPackage: string): boolean {
  const r = spawnSync(tool, ['--version'], { stdio: 'ignore' });
  if (r.error === undefined && r.status === 0) return true;
  const msg = `${tool} not found: install the Debian package ${debianPackage} (scripts/install-system-deps.sh)`;
  if (process.env['CI'] === 'true' || process.getuid?.() === 0) throw new Error(msg);
  t.skip(msg);
  return false;
}

/** Runs `tool args` on `input` and returns its stdout; throws on a non-zero exit. */
export function run(tool: string, args: string[], input?: Uint8Array): Buffer {
  const r = spawnSync(tool, args, { input, maxBuffer: 1 << 30 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} exited ${r.status}: ${r.stderr.toString()}`);
  return r.stdout;
}

/** Deterministic pseudo-random bytes (mulberry32). */
export function prngBytes(seed: number, n: number): Buffer {
  let a = seed >>> 0;
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (t ^ (t >>> 14)) & 0xff;
  }
  return out;
}

/** Deterministic compressible text. */
export function textBytes(seed: number, n: number): Buffer {
  const words = ['layer', 'image', 'the', 'of', 'build', 'cache', 'snapshot', 'digest', 'manifest', 'tar', 'gzip', 'zstd', '\n'];
  const rnd = prngBytes(seed, Math.ceil(n / 3) + 16);
  let s = '';
  for (let i = 0; s.length < n; i++) s += words[rnd[i % rnd.length]! % words.length]! + (rnd[(i * 7) % rnd.length]! & 1 ? ' ' : '');
  return Buffer.from(s.slice(0, n), 'latin1');
}

/** A Readable-compatible chunk list: `data` cut into pieces of the given sizes (cycled). */
export function chunked(data: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length]!);
    out.push(data.subarray(off, off + n));
    off += n;
  }
  return out;
}

/** `data`, cut into chunks of `chunkSizes` (cycled), through `t`; its whole output. */
export async function through(t: Transform, data: Buffer, chunkSizes: number[] = [65536]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunked(data, chunkSizes)), t, async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) out.push(c as Buffer);
  });
  return Buffer.concat(out);
}

/** Named inputs around the edges of a block compressor with blocks of `bs` bytes. */
export function blockCases(bs: number): [string, Buffer][] {
  return [
    ['empty', Buffer.alloc(0)],
    ['1 byte', Buffer.from([0x42])],
    ['random 1 MiB', prngBytes(1, 1 << 20)],
    ['text 1 MiB', textBytes(2, 1 << 20)],
    ['exactly one block', textBytes(3, bs)],
    ['one block + 1', textBytes(4, bs + 1)],
    ['one block - 1', prngBytes(5, bs - 1)],
    ['exactly 5 blocks', Buffer.concat([prngBytes(6, 2 * bs), textBytes(7, 3 * bs)])],
    ['mixed random/text, many blocks', Buffer.concat([textBytes(8, 100_000), prngBytes(9, 200_000), textBytes(10, 150_001)])],
    ['zeros', Buffer.alloc(300_000)],
  ];
}
