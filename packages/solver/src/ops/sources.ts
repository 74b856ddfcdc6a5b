/**
 * Remote and generated COPY/ADD sources: http(s) downloads (with `--checksum`), git
 * repositories, inline heredoc files, and detection/extraction of local tar archives
 * for ADD (plain, gzip, bzip2, xz, zstd), all staged in private temp directories.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { chmod, mkdir, open, rm, stat, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { applyLayer, DEFAULT_LAYER_LIMITS, LayerLimitError, nodeHttp, nodeHttps, nodeZlib, readTar, tlsTrustOptions } from '@tsbuild/snapshotter';
import tarStream from 'tar-stream';
import { BuildError } from '../errors.js';

/** A git source as BuildKit parses it: `remote[#ref[:subdir]]`. */
export interface GitRef {
  remote: string;
  ref?: string;
  subdir?: string;
}

/** True for what BuildKit's ADD treats as a git repository. */
export function parseGitRef(src: string): GitRef | undefined {
  const isGit =
    /^git@[^:]+:/.test(src) ||
    /^git:\/\//.test(src) ||
    /^ssh:\/\//.test(src) ||
    /^https?:\/\/[^#]*\.git(#.*)?$/.test(src) ||
    /^github\.com\//.test(src);
  if (!isGit) return undefined;
  const hash = src.indexOf('#');
  let remote = hash < 0 ? src : src.slice(0, hash);
  if (remote.startsWith('github.com/')) remote = `https://${remote}`;
  const frag = hash < 0 ? '' : src.slice(hash + 1);
  const colon = frag.indexOf(':');
  const ref = colon < 0 ? frag : frag.slice(0, colon);
  const subdir = colon < 0 ? '' : frag.slice(colon + 1);
  return { remote, ...(ref ? { ref } : {}), ...(subdir ? { subdir } : {}) };
}

/** True for an http(s) URL (ADD downloads it; it is never extracted). */
export function isHttpSource(src: string): boolean {
  return /^https?:\/\//i.test(src);
}

function run(cmd: string, args: readonly string[], opts: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => err.push(d));
    p.on('error', (e) => reject(new BuildError(`${cmd} could not start: ${e.message}`, 'FAILED_PRECONDITION', { cause: e })));
    p.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new BuildError(`${cmd} ${args.join(' ')} failed (exit code ${code}): ${Buffer.concat(err).toString('utf8').trim().split('\n').slice(-3).join(' ')}`, 'FAILED_PRECONDITION'));
    });
  });
}

/**
 * Checks out a git ref into `dir/checkout` (the subdir, if named, is what the result
 * points at). Returns the directory to copy and the commit it came from.
 */
export async function fetchGit(ref: GitRef, dir: string, keepGitDir: boolean): Promise<{ root: string; commit: string }> {
  const repo = join(dir, 'checkout');
  await run('git', ['clone', '--quiet', '--no-checkout', ref.remote, repo]);
  const want = ref.ref ?? 'HEAD';
  const commit = (await run('git', ['rev-parse', '--verify', `${want}^{commit}`], { cwd: repo }).catch(() => run('git', ['rev-parse', '--verify', `origin/${want}^{commit}`], { cwd: repo }))).trim();
  await run('git', ['-c', 'advice.detachedHead=false', 'checkout', '--quiet', commit], { cwd: repo });
  if (!keepGitDir) await rm(join(repo, '.git'), { recursive: true, force: true });
  const root = ref.subdir ? join(repo, posix.normalize(`/${ref.subdir}`)) : repo;
  return { root, commit };
}

/**
 * Downloads a URL into `dir` under BuildKit's name (the last path segment, else
 * `__unnamed__`), mode 0600; verifies `--checksum` (`sha256:<hex>`). Returns the
 * file name and its digest.
 */
export async function fetchHttp(url: string, dir: string, checksum: string | undefined, signal?: AbortSignal): Promise<{ name: string; digest: string }> {
  let name = '__unnamed__';
  try {
    const base = posix.basename(new URL(url).pathname);
    if (base !== '' && base !== '.' && base !== '/') name = base;
  } catch {
    throw new BuildError(`invalid URL ${JSON.stringify(url)}`, 'INVALID_ARGUMENT');
  }
  const res = await httpGet(url, signal);
  const file = join(dir, name);
  const h = createHash('sha256');
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      cb(null, chunk);
    },
  });
  await pipeline(res, hasher, createWriteStream(file, { mode: 0o600 }));
  await chmod(file, 0o600);
  const digest = `sha256:${h.digest('hex')}`;
  if (checksum !== undefined) {
    if (!/^sha256:[0-9a-f]{64}$/.test(checksum)) throw new BuildError(`invalid checksum ${JSON.stringify(checksum)}: expected sha256:<64 hex digits>`, 'INVALID_ARGUMENT');
    if (checksum !== digest) throw new BuildError(`digest mismatch ${digest}: ${checksum}`, 'FAILED_PRECONDITION');
  }
  return { name, digest };
}

const MAX_REDIRECTS = 20; // as fetch

/**
 * GET over node:http(s), following redirects: a 2xx response's body, else a BuildError.
 * Not fetch: Node 20's fetch trusts only the CAs Node loaded at start, and the launcher
 * defers NODE_EXTRA_CA_CERTS (tlsTrustOptions).
 */
async function httpGet(url: string, signal: AbortSignal | undefined): Promise<IncomingMessage> {
  let current = new URL(url);
  for (let hops = 0; ; hops++) {
    if (current.protocol !== 'http:' && current.protocol !== 'https:') throw new BuildError(`failed to load ${url}: unsupported protocol ${current.protocol}`, 'INVALID_ARGUMENT');
    const target = current;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const opts = { ...(signal !== undefined ? { signal } : {}), ...(target.protocol === 'https:' ? tlsTrustOptions() : {}) };
      const req = (target.protocol === 'https:' ? nodeHttps() : nodeHttp()).request(target, opts, resolve);
      req.on('error', (err) => reject(signal?.aborted ? err : new BuildError(`failed to load ${url}: ${err.message}`, 'FAILED_PRECONDITION', { cause: err })));
      req.end();
    });
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if ([301, 302, 303, 307, 308].includes(status) && location !== undefined) {
      res.resume();
      if (hops >= MAX_REDIRECTS) throw new BuildError(`failed to load ${url}: more than ${MAX_REDIRECTS} redirects`, 'FAILED_PRECONDITION');
      current = new URL(location, target);
      continue;
    }
    if (status < 200 || status > 299) {
      res.resume();
      throw new BuildError(`failed to load ${url}: invalid response status ${status}`, 'FAILED_PRECONDITION');
    }
    return res;
  }
}

/** Writes heredoc bodies as files (mode 0644) into `dir`. */
export async function writeHeredocs(dir: string, docs: readonly { name: string; content: string }[]): Promise<void> {
  for (const d of docs) {
    const f = join(dir, posix.basename(`/${d.name}`));
    await writeFile(f, d.content, { mode: 0o644 });
    await chmod(f, 0o644);
  }
}

type Compression = 'none' | 'gzip' | 'bzip2' | 'xz' | 'zstd';

async function sniff(path: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

function compressionOf(head: Buffer): Compression {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return 'gzip';
  if (head.length >= 3 && head.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

function isTarHeader(head: Buffer): boolean {
  if (head.length < 512) return false;
  const magic = head.subarray(257, 262).toString('latin1');
  if (magic !== 'ustar') {
    // old v7 tar: no magic; accept when the header checksum is right
    const stored = parseInt(head.subarray(148, 156).toString('latin1').replace(/\0.*$/, '').trim(), 8);
    if (!Number.isFinite(stored)) return false;
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : head[i];
    return sum === stored && head[0] !== 0;
  }
  return true;
}

/**
 * If `path` is a tar archive (possibly compressed), stages the uncompressed tar in
 * `tmpDir` and returns its path; otherwise undefined (ADD then copies the file as is).
 */
export async function detectArchive(path: string, tmpDir: string): Promise<string | undefined> {
  const head = await sniff(path);
  const comp = compressionOf(head);
  if (comp === 'none') return isTarHeader(head) ? path : undefined;
  // a decompression bomb stops at the applier's budget before it fills the disk (catalog T29)
  const { size } = await stat(path);
  const budget = Math.min(DEFAULT_LAYER_LIMITS.maxBytes, Math.max(DEFAULT_LAYER_LIMITS.ratioFloor, size * DEFAULT_LAYER_LIMITS.maxRatio));
  let written = 0;
  const cap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      written += chunk.length;
      cb(written > budget ? new LayerLimitError('bytes', budget, written, `${posix.basename(path)} decompresses to more than ${DEFAULT_LAYER_LIMITS.maxRatio}x its ${size} bytes`) : null, chunk);
    },
  });
  const out = join(tmpDir, `archive-${Math.random().toString(36).slice(2)}.tar`);
  try {
    if (comp === 'gzip') {
      await pipeline(createReadStream(path), nodeZlib().createGunzip(), cap, createWriteStream(out));
    } else {
      const tool = comp === 'bzip2' ? 'bzip2' : comp === 'xz' ? 'xz' : 'zstd';
      await new Promise<void>((resolve, reject) => {
        const p = spawn(tool, ['-dc', path], { stdio: ['ignore', 'pipe', 'ignore'] });
        // the file may close before the tool's 'close' event: wait for both, listening from the start
        const copied = pipeline(p.stdout, cap, createWriteStream(out));
        copied.catch(() => undefined); // settled on 'close' below
        p.on('error', (e) => reject(new BuildError(`${tool} is needed to extract ${posix.basename(path)}: ${e.message} (install the Debian package ${tool === 'xz' ? 'xz-utils' : tool})`, 'FAILED_PRECONDITION')));
        p.on('close', (code) => copied.then(() => (code === 0 ? resolve() : reject(new Error(`${tool} exited ${code}`))), (e: unknown) => (p.kill(), reject(e))));
      });
    }
  } catch (err) {
    if (err instanceof LayerLimitError || err instanceof BuildError) throw new BuildError(`ADD ${posix.basename(path)}: ${err.message}`, err.code, { cause: err });
    // not decompressible: BuildKit copies such a file as it is
    await rm(out, { force: true });
    return undefined;
  }
  if (!isTarHeader(await sniff(out))) {
    await rm(out, { force: true });
    return undefined;
  }
  return out;
}

/**
 * Archive member names as BuildKit extracts them: relative to the destination, a
 * leading `/` dropped and `..` clamped at the destination root (`../../x` is `x`).
 */
export function containName(name: string): string {
  const out: string[] = [];
  for (const seg of name.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return out.join('/');
}

/**
 * Extracts an (uncompressed) tar into a directory of the rootfs. The archive is
 * untrusted: member names (and hardlink targets) are contained first, then the
 * snapshotter's layer applier writes it, resolving every parent inside `destHost`
 * as if chrooted (a symlink in the archive can never send a later member outside).
 */
export async function extractArchive(tar: string, destHost: string, label: string): Promise<void> {
  await mkdir(destHost, { recursive: true });
  const pack = tarStream.pack();
  const producer = (async () => {
    try {
      for await (const e of readTar(createReadStream(tar))) {
        const name = containName(e.rawName ?? e.path);
        if (name === '') {
          for await (const chunk of e.body) void chunk;
          continue;
        }
        const header: tarStream.Header = {
          name,
          uname: '',
          gname: '',
          mode: e.mode,
          uid: e.uid,
          gid: e.gid,
          size: e.type === 'file' ? e.size : 0,
          mtime: new Date(e.mtime * 1000),
          type: e.type,
          linkname: e.type === 'link' && e.linkname !== undefined ? containName(e.linkname) : (e.linkname ?? ''),
          devmajor: e.devmajor ?? 0,
          devminor: e.devminor ?? 0,
        };
        let done!: Promise<void>;
        const ws = await new Promise<import('node:stream').Writable>((resolveWs) => {
          done = new Promise<void>((resolve, reject) => resolveWs(pack.entry(header, (err) => (err ? reject(err) : resolve())) as unknown as import('node:stream').Writable));
        });
        for await (const chunk of e.body) if (!ws.write(chunk)) await once(ws, 'drain');
        ws.end();
        await done;
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    }
  })();
  try {
    await applyLayer(pack as unknown as Readable, destHost);
    await producer;
  } catch (err) {
    throw new BuildError(`failed to extract ${label}: ${(err as Error).message}`, 'INVALID_ARGUMENT', { cause: err });
  }
}
