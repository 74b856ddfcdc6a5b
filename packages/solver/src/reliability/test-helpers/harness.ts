/**
 * Harness of the reliability tests (catalog conventions): spawned tsbuild processes on
 * one store (H-CRASH), the sentinel tree that escape payloads aim at (H-SENTINEL), and
 * store verification (H-VERIFY via checkStore).
 */
import { spawn, spawnSync } from 'node:child_process';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { BuildStore } from '../../store.js';
import { checkStore, type StoreCheckReport } from '../../check/index.js';
import { REPO_ROOT } from '../../test-helpers/store.js';

export const BIN = join(REPO_ROOT, 'packages', 'cli', 'bin', 'tsbuild.js');

export interface Spawned {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** the process id the tsbuild process had */
  pid: number;
  /** with `signalOn`: ms from the start to when the signal was sent (undefined: never sent) */
  signalledAtMs?: number;
}

/**
 * Runs the real tsbuild CLI on `root`; `killAfterMs` sends SIGKILL after that delay;
 * `signalOn` sends `signal` once stdout or stderr first contains `text`.
 */
export function runTsbuild(
  root: string,
  args: readonly string[],
  opts: { env?: Record<string, string>; killAfterMs?: number; cwd?: string; input?: string; signalOn?: { text: string; signal: NodeJS.Signals } } = {},
): Promise<Spawned> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], {
      cwd: opts.cwd ?? REPO_ROOT,
      env: { ...process.env, TSBUILD_ROOT: root, ...(opts.env ?? {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let signalledAtMs: number | undefined;
    const watch = (): void => {
      if (opts.signalOn === undefined || signalledAtMs !== undefined || !(stdout + stderr).includes(opts.signalOn.text)) return;
      signalledAtMs = Date.now() - t0;
      p.kill(opts.signalOn.signal);
    };
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      watch();
    });
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      watch();
    });
    const timer = opts.killAfterMs !== undefined ? setTimeout(() => p.kill('SIGKILL'), opts.killAfterMs) : undefined;
    p.on('error', reject);
    p.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0, pid: p.pid ?? 0, ...(signalledAtMs === undefined ? {} : { signalledAtMs }) });
    });
    p.stdin.end(opts.input ?? '');
  });
}

/** Opens the store (which recovers after crashed builders) and checks it without repairing. */
export async function verifyStore(root: string): Promise<StoreCheckReport> {
  const store = await BuildStore.open(root);
  try {
    return await checkStore(store);
  } finally {
    await store.close();
  }
}

/** Asserts a report has no problem left, printing the issues when it does. */
export function assertClean(report: StoreCheckReport, what: string): void {
  assert.ok(report.ok, `${what}: store check found ${report.issues.length} issue(s):\n${report.issues.map((i) => `  ${i.kind} ${i.subject}: ${i.message}`).join('\n')}`);
}

/** runc containers in the store's private runc root (should be none between builds). */
export function runcContainers(root: string): string[] {
  const r = spawnSync('runc', ['--root', join(root, 'runc', 'runc'), 'list', '-q'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n').filter(Boolean) : [];
}

/** Mount points below `root` (should be none between builds). */
export function mountsUnder(root: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(`${root}/`));
}

/** A seeded xorshift32 generator of numbers in [0, 1): the random loops repeat run to run. */
export function seededRandom(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

/** Makes a build context directory with the given files. */
export async function makeContext(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-rel-ctx-'));
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  return dir;
}

interface NodeState {
  mode: number;
  size: number;
  mtimeMs: number;
  ino: number;
  nlink: number;
  content?: string;
}

/**
 * H-SENTINEL: `/tmp/rel-sentinel-<id>/{canary (0400), dir/, victim}` that payloads aim
 * at instead of real host files; `assertUnchanged` checks content, mode, mtime, inode,
 * link count and that no entry was added.
 */
export class Sentinel {
  readonly dir: string;
  private before = new Map<string, NodeState>();

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async create(): Promise<Sentinel> {
    const dir = await mkdtemp('/tmp/rel-sentinel-');
    await mkdir(join(dir, 'dir'));
    await writeFile(join(dir, 'canary'), 'CANARY-host-secret-7f3a9c\n');
    await chmod(join(dir, 'canary'), 0o400);
    await writeFile(join(dir, 'victim'), 'victim file\n');
    const s = new Sentinel(dir);
    s.before = s.snapshot();
    return s;
  }

  get canaryText(): string {
    return 'CANARY-host-secret-7f3a9c';
  }

  private snapshot(): Map<string, NodeState> {
    const out = new Map<string, NodeState>();
    const walk = (p: string): void => {
      const st = lstatSync(p);
      const n: NodeState = { mode: st.mode, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, nlink: st.nlink };
      if (st.isFile()) n.content = readFileSync(p, 'utf8');
      out.set(p, n);
      if (st.isDirectory()) for (const c of readdirSync(p)) walk(join(p, c));
    };
    walk(this.dir);
    return out;
  }

  assertUnchanged(): void {
    const now = this.snapshot();
    assert.deepEqual([...now.keys()].sort(), [...this.before.keys()].sort(), 'entries were added to or removed from the sentinel tree');
    for (const [p, b] of this.before) assert.deepEqual(now.get(p), b, `sentinel ${p} changed`);
  }

  async cleanup(): Promise<void> {
    await chmod(join(this.dir, 'canary'), 0o600).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** H-TAR: one raw ustar file entry (name written verbatim, valid checksum) with its padded body. */
export function rawTarFile(name: string, content: string, type = '0'): Buffer {
  const body = Buffer.from(content);
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write(type === '5' ? '0000755\0' : '0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write(type, 156, 1, 'latin1');
  h.write('ustar\x0000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const pad = Buffer.alloc((512 - (body.length % 512)) % 512);
  return Buffer.concat([h, body, pad]);
}

/** A raw tar of `entries` plus the end-of-archive blocks. */
export function rawTar(entries: readonly Buffer[]): Buffer {
  return Buffer.concat([...entries, Buffer.alloc(1024)]);
}
