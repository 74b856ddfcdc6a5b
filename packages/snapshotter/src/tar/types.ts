import type { Xattrs } from './system.js';

/** Entry types we read and write (no sparse files, no sockets). */
export type TarEntryType = 'file' | 'link' | 'symlink' | 'character-device' | 'block-device' | 'directory' | 'fifo';

/** One entry to write or one entry read. `path` is relative, without leading `/` or trailing `/`. */
export interface TarEntry {
  path: string;
  type: TarEntryType;
  /** Permission bits incl. setuid/setgid/sticky (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Content size; 0 for everything but regular files. */
  size: number;
  /** Modification time, whole seconds since the epoch (never negative). */
  mtime: number;
  /** Symlink target (verbatim) or hardlink target path (relative). */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, written as `SCHILY.xattr.<name>` PAX records. */
  xattrs?: Xattrs;
  /** For writing: absolute path of the file whose `size` bytes are the content. */
  source?: string;
}
