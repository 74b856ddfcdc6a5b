/**
 * Inodes named exactly: an O_PATH fd opened without following a final symlink and
 * checked, through `/proc/self/fd/N`, to have been reached at the expected path (so
 * through no symlink). Paths below `/proc/self/fd/N` then resolve from that inode: a
 * symlink swapped in for it or any of its parents later redirects nothing. Linux only.
 */
import { closeSync, constants, fstatSync, openSync, readlinkSync } from 'node:fs';
import { isErrno } from './process.js';

/** Linux O_PATH (not in Node's constants): an fd naming an inode without opening it (no device open, no FIFO wait). */
const O_PATH = 0o10000000;

/** The path naming the inode behind `fd` (`/proc/self/fd/N`). */
export function fdPath(fd: number): string {
  return `/proc/self/fd/${fd}`;
}

/**
 * Opens `path` as described above; `expected` is the real path the kernel must have
 * reached (default `path` itself). Undefined when it is missing, is a symlink, or was
 * reached through one; the caller closes the fd.
 */
export function openExact(path: string, opts: { directory?: boolean; expected?: string } = {}): number | undefined {
  let fd: number;
  try {
    fd = openSync(path, O_PATH | constants.O_NOFOLLOW | (opts.directory === true ? constants.O_DIRECTORY : 0));
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ELOOP', 'ENOTDIR')) return undefined;
    throw err;
  }
  let ok = false;
  try {
    ok = readlinkSync(fdPath(fd)) === (opts.expected ?? path) && !fstatSync(fd).isSymbolicLink();
  } finally {
    if (!ok) closeSync(fd);
  }
  return ok ? fd : undefined;
}
