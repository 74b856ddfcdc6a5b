import { spawn } from 'node:child_process';
import { constants, createWriteStream } from 'node:fs';
import { chmod, link, lstat, mkdir, mkdtemp, open, rm, symlink, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { UsageError } from '../errors.js';

/** A build context made ready on disk, and how to remove it afterwards. */
export interface PreparedContext {
  dir: string;
  /** the Dockerfile's text when stdin held a Dockerfile rather than a tar */
  dockerfileText?: string;
  cleanup: () => Promise<void>;
}

function run(cmd: string, args: readonly string[], cwd?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', (e) => reject(new UsageError(`cannot run ${cmd}: ${e.message} (install the Debian package git)`)));
    p.on('close', (code) => (code === 0 ? resolve() : reject(new ContextError(`${cmd} ${args[0]} failed (exit ${code}): ${err.trim().split('\n').slice(-3).join(' ')}`))));
  });
}

/** The context could not be fetched or unpacked (exit code 1). */
export class ContextError extends Error {
  override name = 'ContextError';
  readonly code = 'FAILED_PRECONDITION' as const;
}

/**
 * Clones a git URL (`URL#ref:subdir`, as buildx) into a temp dir: a shallow fetch of
 * the ref (default HEAD), checked out, without the .git directory.
 */
export async function gitContext(url: string): Promise<PreparedContext> {
  const hash = url.indexOf('#');
  const repo = hash < 0 ? url : url.slice(0, hash);
  const frag = hash < 0 ? '' : url.slice(hash + 1);
  const [ref, subdir] = frag.split(':', 2);
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-git-'));
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    await run('git', ['init', '-q', dir]);
    await run('git', ['fetch', '-q', '--depth', '1', repo, ref || 'HEAD'], dir);
    await run('git', ['checkout', '-q', 'FETCH_HEAD'], dir);
    await rm(join(dir, '.git'), { recursive: true, force: true });
    const sub = subdir ? posix.normalize(`/${subdir}`).slice(1) : '';
    const ctx = sub ? join(dir, sub) : dir;
    const st = await lstat(ctx).catch(() => undefined);
    if (!st?.isDirectory()) throw new ContextError(`git context ${url}: subdirectory ${JSON.stringify(subdir)} not found`);
    return { dir: ctx, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Reads the first `n` bytes of a stream and returns them with an iterable of the whole stream. */
async function peek(src: AsyncIterable<Buffer>, n: number): Promise<{ head: Buffer; all: AsyncIterable<Buffer> }> {
  const it = src[Symbol.asyncIterator]();
  const got: Buffer[] = [];
  let len = 0;
  let done = false;
  while (len < n) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    got.push(r.value);
    len += r.value.length;
  }
  const head = Buffer.concat(got);
  async function* all(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (done) return;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  }
  return { head, all: all() };
}

/**
 * `tsbuild build -`: stdin holds a tar (optionally gzipped) of the context, or just a
 * Dockerfile (then the context is empty). The tar is untrusted: names are confined
 * to the temp dir (no `..`, no absolute paths, never written through a symlink),
 * hardlinks must point at regular files already extracted, and devices are refused.
 */
export async function stdinContext(stdin: AsyncIterable<Buffer>): Promise<PreparedContext> {
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-ctx-'));
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    let { head, all } = await peek(stdin, 512);
    if (head[0] === 0x1f && head[1] === 0x8b) {
      const gunzip = createGunzip();
      const src = all;
      void pipeline(src, gunzip).catch((e: unknown) => gunzip.destroy(e as Error));
      ({ head, all } = await peek(gunzip as AsyncIterable<Buffer>, 512));
    }
    if (head.length < 512 || head.subarray(257, 262).toString('latin1') !== 'ustar') {
      // not a tar: a Dockerfile on stdin, with an empty context
      const chunks: Buffer[] = [];
      for await (const c of all) chunks.push(c);
      return { dir, dockerfileText: Buffer.concat(chunks).toString('utf8'), cleanup };
    }
    await extractTar(all, dir);
    return { dir, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function ensureDirs(root: string, rel: string): Promise<void> {
  let cur = root;
  for (const part of rel.split('/').filter(Boolean)) {
    cur = join(cur, part);
    const st = await lstat(cur).catch(() => undefined);
    if (!st) await mkdir(cur, { mode: 0o755 });
    else if (!st.isDirectory()) throw new ContextError(`context tar: ${JSON.stringify(rel)} goes through ${JSON.stringify(cur.slice(root.length + 1))}, which is not a directory`);
  }
}

function safeName(name: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw new ContextError(`context tar: entry ${JSON.stringify(name)} points outside the context`);
  return parts.join('/');
}

async function extractTar(src: AsyncIterable<Buffer>, dir: string): Promise<void> {
  const { readTar } = await import('@tsbuild/snapshotter');
  for await (const e of readTar(src)) {
    const rel = safeName(e.rawName);
    if (rel === '') continue;
    const parent = posix.dirname(rel) === '.' ? '' : posix.dirname(rel);
    await ensureDirs(dir, parent);
    const dest = join(dir, rel);
    const existing = await lstat(dest).catch(() => undefined);
    if (e.type === 'directory') {
      if (existing && !existing.isDirectory()) await unlink(dest);
      if (!existing?.isDirectory()) await mkdir(dest, { mode: 0o755 });
      await chmod(dest, e.mode & 0o777);
      continue;
    }
    if (existing) {
      if (existing.isDirectory()) throw new ContextError(`context tar: ${JSON.stringify(rel)} replaces a directory`);
      await unlink(dest);
    }
    switch (e.type) {
      case 'file': {
        const fh = await open(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, e.mode & 0o777);
        await pipeline(e.body, createWriteStream('', { fd: fh.fd, autoClose: false }));
        await fh.chmod(e.mode & 0o777);
        await fh.close();
        break;
      }
      case 'symlink':
        await symlink(e.linkname ?? '', dest);
        break;
      case 'link': {
        const target = safeName(e.linkname ?? '');
        // check the target's directories first: lstat would follow a symlink among them
        await ensureDirs(dir, posix.dirname(target) === '.' ? '' : posix.dirname(target));
        const st = await lstat(join(dir, target)).catch(() => undefined);
        if (!st?.isFile()) throw new ContextError(`context tar: hardlink ${JSON.stringify(rel)} must point at a regular file extracted before it, found ${JSON.stringify(e.linkname)}`);
        await link(join(dir, target), dest);
        break;
      }
      default:
        throw new ContextError(`context tar: ${JSON.stringify(rel)} is a ${e.type}, which a build context cannot hold`);
    }
  }
}
