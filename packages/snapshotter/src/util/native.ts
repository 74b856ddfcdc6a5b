/**
 * The optional native addon (`native/tsbuild_sys.c`, built by `npm ci` through node-gyp
 * from source): mount(2), umount2(2) and the l*xattr calls, so a build step does not
 * spawn mount(8), umount(8) and getfattr (3–6 ms each, more under load). When the addon
 * is missing (not built, or another platform) or `TSBUILD_NATIVE=0`, `native()` returns
 * undefined and the callers use the spawn path, which stays the reference behaviour:
 * tests run both.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** What the addon exports (see native/tsbuild_sys.c). Every call runs on the thread pool. */
export interface NativeSys {
  /** mount(2); `cwd` (a private one, the process's never changes) resolves relative paths in `data`. */
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null, cwd: string | null): Promise<void>;
  umount2(target: string, flags: number): Promise<void>;
  /** Every xattr under `dir` (physical walk): a flat list [relative path, name, value, ...]; '' is `dir`. */
  treeXattrs(dir: string): Promise<(string | Buffer)[]>;
  /** lsetxattr(paths[i], names[i], values[i]) in order; stops at the first failure. */
  setXattrs(paths: readonly string[], names: readonly string[], values: readonly Buffer[]): Promise<void>;
  /**
   * The sha256 (hex) and length of a tar laid out by `plan`: for each pair (h, s), the next
   * h bytes of `headers`, then, when s > 0, exactly s bytes of the next NUL-terminated path
   * of `paths` (opened O_NOFOLLOW; another size rejects with code ECHANGED) and zeros to a
   * multiple of 512. One thread reads, another hashes. `abort[0] = 1` stops it (ECANCELED).
   * The buffers are read in place until the promise settles. ENOSYS: no SHA-256 in this node.
   */
  hashTar(headers: Buffer, plan: Float64Array, paths: Buffer, abort: Int32Array): Promise<{ digest: string; size: number }>;
  /**
   * Every entry below `dir` (physical walk, the root excluded, directory order): records
   * [u32 path length][path][u32 mode, uid, gid][i64 size, mtime s, mtime ns][u64 nlink, dev, ino, rdev]
   * in host byte order. ENOTDIR when `dir` itself is not a directory (a symlink included).
   */
  scanTree(dir: string): Promise<Buffer>;
  /**
   * Creates one batch of regular files, in order, on one pool thread: the i-th
   * NUL-terminated path of `paths` (O_CREAT|O_EXCL|O_NOFOLLOW) gets the next `meta[6i]`
   * buffers of `chunks` as its content; then chown to `meta[6i+1]`/`meta[6i+2]` when
   * `meta[6i+5] & 1`, chmod `meta[6i+3]`, atime and mtime `meta[6i+4]` (whole seconds).
   * Stops at the first failure. The buffers are read in place until the promise settles.
   */
  writeFiles(paths: Buffer, meta: Float64Array, chunks: readonly Buffer[]): Promise<void>;
  /**
   * Opens a gzip file for {@link gunzipRead} (synchronous: open and a 3-byte read); null
   * when it is not gzip, or this node has no zlib (or, with `hash`, no SHA-256) to bind.
   */
  gunzipOpen(path: string, hash: boolean): object | null;
  /**
   * Inflates into `out` until it is full or the stream ends; resolves to the bytes written
   * (0: the end). Concatenated members are one stream; a zero byte after a member ends it
   * (padding, ignored), as in node's zlib. Corrupt or truncated: rejects with
   * code Z_DATA_ERROR / Z_BUF_ERROR. One read at a time per stream.
   */
  gunzipRead(stream: object, out: Buffer): Promise<number>;
  /** Frees the stream (never during a read): the hex sha256 of all output when opened with `hash` and read to the end, else null. */
  gunzipClose(stream: object): string | null;
  /**
   * Sets FS_TOPDIR_FL (`chattr +T`) on a directory, so ext2/3/4 place its new
   * subdirectories (and their files) in block groups of their own (synchronous). false
   * when the filesystem has no such flag.
   */
  topDir(dir: string): boolean;
  /** Marks every descriptor above `fd` close-on-exec (synchronous; close_range(2) or a /proc/self/fd walk). */
  cloexecAbove(fd: number): void;
  constants: { MS_RDONLY: number; MS_NOSUID: number; MS_NODEV: number; MS_NOEXEC: number; MS_REMOUNT: number; MS_BIND: number; MS_REC: number };
}

/** A system call of the addon failed: `code` is the errno name, as in Node's fs errors. */
export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

let loaded: { sys: NativeSys | undefined } | undefined;
let enabled = process.env.TSBUILD_NATIVE !== '0';

/** The addon, or undefined when it is not built or `TSBUILD_NATIVE=0` (loaded once per process). */
export function native(): NativeSys | undefined {
  if (!enabled) return undefined;
  if (loaded === undefined) {
    let sys: NativeSys | undefined;
    if (process.platform === 'linux') {
      try {
        // found through the package, not this file's place: the CLI bundle inlines this module
        const req = createRequire(import.meta.url);
        sys = req(join(dirname(req.resolve('@tsbuild/snapshotter/package.json')), 'build', 'Release', 'tsbuild_sys.node')) as NativeSys;
      } catch {
        sys = undefined;
      }
    }
    loaded = { sys };
  }
  return loaded.sys;
}

/** For tests of both paths in one process: false forces the spawn path, true uses the addon if built. */
export function setNativeEnabled(on: boolean): void {
  enabled = on;
}

/** Whether `err` came from the addon (has errno name, errno and syscall). */
export function isNativeError(err: unknown): err is NativeError {
  return err instanceof Error && typeof (err as Partial<NativeError>).syscall === 'string' && typeof (err as Partial<NativeError>).code === 'string';
}

/**
 * Marks every descriptor above 2 close-on-exec, so none that the process inherited
 * without O_CLOEXEC reaches a child spawned after this call (Node opens its own with
 * it). Returns false when the addon is absent: the caller must then close them in the
 * child itself (the executor's bash launcher does).
 */
export function markInheritedFdsCloexec(): boolean {
  const sys = native();
  if (!sys) return false;
  sys.cloexecAbove(2);
  return true;
}
