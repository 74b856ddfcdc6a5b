/**
 * Support for the fidelity suite: builds a case with the reference BuildKit (dockerd 26
 * + buildx, `TSBUILD_REF_DOCKER`) and with tsbuild, and compares the two images.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, normalize, posix } from 'node:path';
import { applyLayer, openLayerStream, type StoredImage } from '@tsbuild/snapshotter';
import type { BuildStore } from '../../store.js';

/** What `case.json` may say about a case (every field optional). */
export interface CaseSpec {
  buildArgs?: Record<string, string>;
  target?: string;
  /** the Dockerfile, relative to the case dir (default `Dockerfile`) */
  dockerfile?: string;
  /** the context, relative to the case dir (default the case dir) */
  context?: string;
  /** secrets: `src` relative to the case dir, or `env` naming a variable set from `env` below */
  secrets?: { id: string; src?: string; env?: string }[];
  /** environment variables set for both builders (for `--secret env=`) */
  env?: Record<string, string>;
  /** named build contexts: `dir:<rel>`, or `docker-image://NAME` */
  buildContexts?: Record<string, string>;
  /** forward an ssh-agent as `default` */
  ssh?: boolean;
  /** both builds must fail with a message matching this regexp */
  error?: string;
  /** serve `<case>/www` over http and pass its URL as build-arg BASE */
  http?: boolean;
}

/** Runs a command, collecting output; rejects with stdout+stderr when it fails. */
export function exec(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: Buffer } = {}): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => err.push(d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), code: code ?? 1 }));
    p.stdin.end(opts.input);
  });
}

/** One path of a flattened image filesystem, without times. */
export type FsEntry = string;

/** Applies an image's layers in order onto a fresh directory and describes every path. */
export async function flattenImage(store: BuildStore, image: StoredImage, workDir: string): Promise<Map<string, FsEntry>> {
  const dir = await mkdtemp(join(workDir, 'flat-'));
  try {
    for (const l of image.manifest.layers) await applyLayer(openLayerStream(store.content, l), dir);
    const out = new Map<string, FsEntry>();
    await describeTree(dir, '', out);
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex').slice(0, 16);
}

async function describeTree(root: string, rel: string, out: Map<string, FsEntry>): Promise<void> {
  const names = (await readdir(join(root, rel))).sort();
  for (const n of names) {
    const r = rel === '' ? n : `${rel}/${n}`;
    const abs = join(root, r);
    const st = await lstat(abs);
    const perm = (st.mode & 0o7777).toString(8).padStart(4, '0');
    const owner = `${st.uid}:${st.gid}`;
    if (st.isDirectory()) {
      out.set(`/${r}`, `dir ${perm} ${owner}`);
      await describeTree(root, r, out);
    } else if (st.isSymbolicLink()) {
      out.set(`/${r}`, `symlink ${owner} -> ${await readlink(abs)}`);
    } else if (st.isFile()) {
      let text = '';
      if (st.size <= 120) {
        const buf = await readFile(abs);
        if (!buf.includes(0)) text = ` ${JSON.stringify(buf.toString('utf8'))}`;
      }
      out.set(`/${r}`, `file ${perm} ${owner} ${st.size} ${await sha256File(abs)}${st.nlink > 1 ? ' (hardlinked)' : ''}${text}`);
    } else {
      out.set(`/${r}`, `${st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : st.isCharacterDevice() ? 'char' : 'block'} ${perm} ${owner} ${st.rdev}`);
    }
  }
}

/** The config fields the suite compares, plus the history (minus timestamps). */
export function configView(image: StoredImage): Record<string, unknown> {
  const c = image.config.config;
  const pick = ['Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'User', 'ExposedPorts', 'Volumes', 'Labels', 'StopSignal', 'Healthcheck', 'Shell', 'OnBuild'] as const;
  const out: Record<string, unknown> = {};
  for (const k of pick) {
    const v = (c as Record<string, unknown>)[k];
    // BuildKit writes empty/absent values in several ways; absent, null, '' and [] mean the same
    if (v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0)) continue;
    out[k] = sortKeys(v);
  }
  out.history = (image.config.history ?? []).map((h) => `${h.created_by ?? ''}${h.empty_layer ? ' [empty]' : ''}`);
  return out;
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v) || v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, x]) => [k, sortKeys(x)]));
}

/** Line diff of two flattened filesystems and configs; empty when they are the same. */
export function diffImages(ref: { fs: Map<string, FsEntry>; config: Record<string, unknown> }, ours: { fs: Map<string, FsEntry>; config: Record<string, unknown> }): string[] {
  const lines: string[] = [];
  const paths = [...new Set([...ref.fs.keys(), ...ours.fs.keys()])].sort();
  for (const p of paths) {
    const a = ref.fs.get(p);
    const b = ours.fs.get(p);
    if (a === b) continue;
    if (a === undefined) lines.push(`+ ${p}: ${b} (only in tsbuild)`);
    else if (b === undefined) lines.push(`- ${p}: ${a} (only in BuildKit)`);
    else lines.push(`~ ${p}: BuildKit ${a} | tsbuild ${b}`);
  }
  const keys = [...new Set([...Object.keys(ref.config), ...Object.keys(ours.config)])].sort();
  for (const k of keys) {
    const a = JSON.stringify(ref.config[k]);
    const b = JSON.stringify(ours.config[k]);
    if (a === b) continue;
    if (k === 'history') {
      const ha = ref.config[k] as string[];
      const hb = ours.config[k] as string[];
      for (let i = 0; i < Math.max(ha.length, hb.length); i++) {
        if (ha[i] !== hb[i]) lines.push(`~ history[${i}]: BuildKit ${JSON.stringify(ha[i])} | tsbuild ${JSON.stringify(hb[i])}`);
      }
    } else {
      lines.push(`~ config.${k}: BuildKit ${a} | tsbuild ${b}`);
    }
  }
  return lines;
}

/** A static file server on 127.0.0.1 (for ADD of URLs and git over dumb http). */
export async function staticServer(root: string): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    const file = join(root, posix.normalize(path));
    if (!file.startsWith(root)) {
      res.writeHead(403).end();
      return;
    }
    lstat(file).then(
      (st) => {
        if (!st.isFile()) {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, { 'content-length': st.size, 'last-modified': new Date(Date.UTC(2020, 0, 2, 3, 4, 5)).toUTCString() });
        createReadStream(file).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('static server: no address');
  return { url: `http://127.0.0.1:${addr.port}`, server };
}

/** Runs `fn` over `items` with at most `n` at once, keeping the order of results. */
export function pool<T, R>(items: readonly T[], n: number, fn: (t: T) => Promise<R>): Promise<R>[] {
  const results: Promise<R>[] = [];
  let running = 0;
  const queue: (() => void)[] = [];
  for (const item of items) {
    results.push(
      new Promise<void>((r) => {
        if (running < n) {
          running++;
          r();
        } else queue.push(() => r());
      }).then(() =>
        fn(item).finally(() => {
          const next = queue.shift();
          if (next) next();
          else running--;
        }),
      ),
    );
  }
  return results;
}
