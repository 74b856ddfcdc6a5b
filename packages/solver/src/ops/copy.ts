import { execFile } from 'node:child_process';
import { chmodSync, chownSync, closeSync, constants as fsConstants, copyFileSync, lchownSync, linkSync, lstatSync, openSync, readlinkSync, realpathSync, unlinkSync, utimesSync } from 'node:fs';
import { chmod, chown, lchown, lstat, lutimes, mkdir, rm, symlink, utimes } from 'node:fs/promises';
import { join, posix, relative } from 'node:path';
import { fdPath, openExact, splitDev } from '@tsbuild/snapshotter';
import { promisify } from 'node:util';
import { hardlinkAnchors, specialKind, type BuildContext, type ContextEntry, type SourceMatch } from '../context/build-context.js';
import { BuildError } from '../errors.js';
import { resolveInRoot } from '../executor/index.js';
import { detectArchive, extractArchive } from './sources.js';

export interface Owner {
  uid: number;
  gid: number;
}

export interface CopyRequest {
  /** the mounted root filesystem being written */
  rootfs: string;
  /** where the sources come from (the build context or another stage's root) */
  source: BuildContext;
  matches: readonly SourceMatch[];
  /** destination inside the container, absolute, trailing slash kept */
  dest: string;
  /** more than one source was named (or a glob): the destination must be a directory */
  multiple: boolean;
  chown?: Owner;
  /** applied to every copied file and directory */
  chmod?: (mode: number, isDir: boolean) => number;
  /** ADD: extract local tar archives (plain or compressed) into the destination; staging dir for decompression */
  unpackTmp?: string;
  /** container paths of regular files already in place with the right content and metadata (see relinkUnchanged) */
  skip?: ReadonlySet<string> | ReadonlyMap<string, unknown>;
}

const DEFAULT_OWNER: Owner = { uid: 0, gid: 0 };
const execFileP = promisify(execFile);

/**
 * Copies matched sources into a root filesystem with Docker's COPY rules: a
 * directory source copies its contents, a file source lands at the destination
 * path (or inside it when the destination ends with `/` or is an existing directory).
 * Every destination directory is resolved inside the rootfs as if chrooted, so a
 * symlink in the image can never send a file outside it; an existing non-directory
 * at a file's destination is replaced, never written through.
 */
export async function copyInto(req: CopyRequest): Promise<void> {
  const owner = req.chown ?? DEFAULT_OWNER;
  const destIsDirSyntax = req.dest.endsWith('/');
  if (req.multiple && !destIsDirSyntax) {
    throw new BuildError('when using COPY with more than one source file, the destination must be a directory and end with a /');
  }
  const destPath = posix.resolve('/', req.dest);
  const resolvedDest = await resolveInRoot(req.rootfs, destPath);
  const destStat = await lstat(resolvedDest).catch(() => undefined);
  const destIsDir = destIsDirSyntax || (destStat?.isDirectory() ?? false);
  const dirTimes: { path: string; containerPath: string; e: ContextEntry }[] = [];
  const pins = new Pins(req.rootfs);
  try {
    for (const m of req.matches) {
      let tar: string | undefined;
      if (m.root.type === 'dir') {
        // contents of the directory go into dest
        const base = await ensureDir(pins, destPath, owner, undefined);
        // host paths below the pinned base; the parent of the entries being copied is held
        // open (one directory at a time), so each entry lands in the directory made for it
        const hostDirs = new Map<string, string>([[m.root.rel, base]]);
        // files sharing an inode with an earlier file of this source become links to its copy
        const anchors = hardlinkAnchors(m);
        const groupFirsts = new Set(anchors.values());
        const copied = new Map<ContextEntry, { parentRel: string; name: string; containerPath: string }>();
        let held: { rel: string; fd: number } | undefined;
        let n = 0;
        for (const e of m.entries) {
          if (e === m.root) continue;
          // regular files are copied with synchronous calls (see copyFileSlice); let the
          // event loop breathe between slices
          if (++n % FILES_PER_SLICE === 0) await new Promise<void>((r) => setImmediate(r));
          const slash = e.rel.lastIndexOf('/');
          const parentRel = slash < 0 ? '' : e.rel.slice(0, slash);
          const name = e.rel.slice(slash + 1);
          const parentHost = hostDirs.get(parentRel);
          if (parentHost === undefined) throw new BuildError(`copy: parent of ${e.rel} was not copied`, 'INTERNAL');
          const containerPath = containerPathOf(destPath, m.root.rel, e.rel);
          if (held?.rel !== parentRel) {
            if (held !== undefined) pins.release(held.fd);
            held = { rel: parentRel, fd: pins.hold(parentHost, posix.dirname(containerPath)) };
          }
          const target = `${fdPath(held.fd)}/${name}`;
          if (e.type === 'dir') {
            const d = await ensureDirAt(pins, target, containerPath, owner, modeOf(e, true, req.chmod), false);
            const stable = d === target ? `${parentHost}/${name}` : d;
            hostDirs.set(e.rel, stable);
            dirTimes.push({ path: stable, containerPath, e });
          } else if (req.skip === undefined || !req.skip.has(containerPath)) {
            const anchor = anchors.get(e);
            const first = anchor === undefined ? undefined : copied.get(anchor);
            if (first !== undefined) {
              linkTo(pins, hostDirs.get(first.parentRel)!, first, target, e.rel);
            } else {
              await copyEntry(req.source, e, target, owner, req.chmod);
              if (groupFirsts.has(e)) copied.set(e, { parentRel, name, containerPath });
            }
          }
        }
        if (held !== undefined) pins.release(held.fd);
      } else if (req.unpackTmp !== undefined && m.root.type === 'file' && (tar = await detectArchive(req.source.abs(m.root.rel), req.unpackTmp)) !== undefined) {
        // ADD of a local archive: its contents go into the destination directory
        const base = await ensureDir(pins, destPath, owner, undefined);
        await extractArchive(tar, base, m.root.rel);
      } else {
        // the target's parent, pinned: its resolution cannot change under the copy
        const parentHost = destIsDir ? await ensureDir(pins, destPath, owner, undefined) : await ensureDir(pins, posix.dirname(destPath), owner, undefined);
        const name = destIsDir ? posix.basename(m.root.rel) : posix.basename(destPath);
        await copyEntry(req.source, m.root, join(parentHost, name), owner, req.chmod);
      }
    }
    // directory mtimes last, deepest first, so creating children does not disturb them
    for (const { path, containerPath, e } of dirTimes.reverse()) {
      const fd = pins.hold(path, containerPath);
      await utimes(fdPath(fd), e.mtimeMs / 1000, e.mtimeMs / 1000);
      pins.release(fd);
    }
  } finally {
    pins.close();
  }
}

/**
 * Directories of one copy held by O_PATH fds ({@link openExact}) as they are resolved:
 * what is written below `/proc/self/fd/N` lands in that directory even if a symlink is
 * swapped into the rootfs path meanwhile. A directory reached through a symlink, or
 * outside the rootfs, is refused. The destination and its parents stay held for the
 * whole copy; a tree's directories only while their entries are copied.
 */
class Pins {
  readonly rootfs: string;
  readonly #realRoot: string;
  /** held fd → the real path it was verified at */
  readonly #real = new Map<number, string>();

  constructor(rootfs: string) {
    this.rootfs = rootfs;
    this.#realRoot = realpathSync(rootfs);
  }

  /** The real path `hostPath` (in the rootfs, or below a held fd) must name. */
  #expected(hostPath: string): string {
    const m = /^\/proc\/self\/fd\/(\d+)(\/.*)?$/.exec(hostPath);
    const held = m === null ? undefined : this.#real.get(Number(m[1]));
    if (held !== undefined) return held + (m![2] ?? '');
    const rel = relative(this.rootfs, hostPath);
    return rel === '' ? this.#realRoot : join(this.#realRoot, rel);
  }

  /** Holds the directory at `hostPath` until {@link release} (or {@link close}). */
  hold(hostPath: string, containerPath: string): number {
    const expected = this.#expected(hostPath);
    if (expected !== this.#realRoot && !expected.startsWith(`${this.#realRoot}/`)) throw new BuildError(`cannot copy to ${containerPath}: it resolves outside the root filesystem`);
    // a held fd's own path is a (magic) symlink: open the directory it names as `<it>/.`
    const fd = openExact(/^\/proc\/self\/fd\/\d+$/.test(hostPath) ? `${hostPath}/.` : hostPath, { directory: true, expected });
    if (fd === undefined) throw new BuildError(`cannot copy to ${containerPath}: it changed while being written (a symlink or a non-directory appeared there)`);
    this.#real.set(fd, expected);
    return fd;
  }

  /** Holds the directory for the rest of the copy; returns the path naming it. */
  pin(hostPath: string, containerPath: string): string {
    return fdPath(this.hold(hostPath, containerPath));
  }

  release(fd: number): void {
    if (this.#real.delete(fd)) closeSync(fd);
  }

  close(): void {
    for (const fd of [...this.#real.keys()]) this.release(fd);
  }
}

/**
 * Where a directory source's entry lands: `dest` (absolute, normalised) plus the entry's
 * path below the source root `rootRel` (context paths are clean: no `.`, `..` or `//`).
 * String operations only: this runs once per copied file.
 */
export function containerPathOf(dest: string, rootRel: string, rel: string): string {
  const below = rootRel === '' ? rel : rel.slice(rootRel.length + 1);
  return dest === '/' ? `/${below}` : `${dest}/${below}`;
}

/** The permission bits a copy gives an entry (its own, or after --chmod). */
export function modeOf(e: ContextEntry, isDir: boolean, chmodFn: CopyRequest['chmod']): number {
  const perm = e.mode & 0o7777;
  return chmodFn ? chmodFn(perm, isDir) : perm;
}

/** Symlinks in a destination path followed before giving up (as the kernel's 40). */
const MAX_DEST_SYMLINKS = 40;

/**
 * mkdir -p of a container path, resolving every existing component inside the rootfs;
 * each component is pinned, so the returned directory is the one resolved.
 */
async function ensureDir(pins: Pins, containerPath: string, owner: Owner, mode: number | undefined, follows = 0): Promise<string> {
  const parts = posix.resolve('/', containerPath).split('/').filter(Boolean);
  let cur = '/';
  let host = pins.pin(pins.rootfs, '/');
  for (const p of parts) {
    cur = posix.join(cur, p);
    host = await ensureDirAt(pins, join(host, p), cur, owner, undefined, true, follows);
  }
  if (mode !== undefined) await chmod(host, mode);
  return host;
}

/**
 * Makes sure `hostPath` (the host path of `containerPath`, whose parent is already
 * resolved) is a directory; follows an existing symlink there inside the rootfs. Its
 * metadata is set through a held fd; with `pin` it stays held and the path naming the
 * fd is returned (else `hostPath`).
 */
async function ensureDirAt(pins: Pins, hostPath: string, containerPath: string, owner: Owner, mode: number | undefined, pin: boolean, follows = 0): Promise<string> {
  const st = await lstat(hostPath).catch(() => undefined);
  if (st?.isSymbolicLink()) {
    if (follows >= MAX_DEST_SYMLINKS) throw new BuildError(`cannot copy to ${containerPath}: too many levels of symbolic links`);
    // resolved inside the rootfs, then walked again component by component (each pinned)
    const resolved = await resolveInRoot(pins.rootfs, containerPath);
    return ensureDir(pins, `/${relative(pins.rootfs, resolved)}`, owner, undefined, follows + 1);
  }
  if (st && !st.isDirectory()) {
    await rm(hostPath, { force: true });
  }
  const fresh = !st || !st.isDirectory();
  // directories COPY creates (the destination and its parents) are 0755, as BuildKit makes them
  if (fresh) await mkdir(hostPath, { mode: mode ?? 0o755 });
  // metadata through a held fd (chown and chmod follow it to the directory itself)
  const fd = pins.hold(hostPath, containerPath);
  if (fresh || mode !== undefined) {
    await chown(fdPath(fd), owner.uid, owner.gid);
    await chmod(fdPath(fd), mode ?? 0o755);
  }
  if (pin) return fdPath(fd);
  pins.release(fd);
  return hostPath;
}

/** How many entries copyInto copies between two turns of the event loop. */
const FILES_PER_SLICE = 256;

/**
 * One regular file, with synchronous calls: a COPY of many small files is bound by
 * per-call overhead, and each fs.promises call is a round trip through the thread pool
 * (measured on 20,000 files: about 9× slower than these five direct calls). copyFile
 * tries a reflink first and falls back to copy_file_range.
 */
function copyFileSlice(src: string, target: string, owner: Owner, mode: number, t: number): void {
  // EXCL: the target was removed before; never write through whatever appeared there since
  copyFileSync(src, target, fsConstants.COPYFILE_FICLONE | fsConstants.COPYFILE_EXCL);
  lchownSync(target, owner.uid, owner.gid);
  chmodSync(target, mode);
  utimesSync(target, t, t);
}

async function copyEntry(source: BuildContext, e: ContextEntry, target: string, owner: Owner, chmodFn: CopyRequest['chmod']): Promise<void> {
  const existing = lstatSync(target, { throwIfNoEntry: false });
  if (existing) {
    if (existing.isDirectory()) {
      if (e.type === 'dir') return;
      throw new BuildError(`cannot copy ${JSON.stringify(e.rel)} over the directory at its destination`);
    }
    unlinkSync(target);
  }
  const t = e.mtimeMs / 1000;
  switch (e.type) {
    case 'file':
      copyFileSlice(source.abs(e.rel), target, owner, modeOf(e, false, chmodFn), t);
      return;
    case 'symlink':
      await symlink(e.linkTarget!, target);
      await lchown(target, owner.uid, owner.gid);
      await lutimes(target, t, t);
      return;
    case 'dir':
      await mkdir(target);
      await lchown(target, owner.uid, owner.gid);
      await chmod(target, modeOf(e, true, chmodFn));
      return;
    case 'other':
      await copySpecial(e, target, owner, modeOf(e, false, chmodFn), t);
      return;
  }
}

/**
 * A FIFO or device node is made anew (mknod, in the pinned parent directory); a socket
 * becomes an empty regular file, as BuildKit copies one from a context. Owner, mode and
 * times are then set through an fd checked to be the node just made (never a symlink
 * swapped in for it). Device nodes in a rootfs are data: steps cannot open them (see
 * SECURITY.md).
 */
async function copySpecial(e: ContextEntry, target: string, owner: Owner, mode: number, t: number): Promise<void> {
  const kind = specialKind(e);
  const parent = posix.dirname(target);
  const name = posix.basename(target);
  if (kind === 'socket') {
    // O_EXCL: never through whatever appeared at the name
    closeSync(openSync(target, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600));
  } else {
    const { major, minor } = splitDev(BigInt(e.rdev));
    const dev = kind === 'fifo' ? ['p'] : [kind === 'char' ? 'c' : 'b', String(major), String(minor)];
    try {
      // the parent is a held fd's /proc/self/fd path: the child's cwd is set before it execs, while it still has our fds
      await execFileP('mknod', ['-m', (mode & 0o777).toString(8), '--', name, ...dev], { cwd: parent });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.trim();
      throw new BuildError(`cannot copy ${JSON.stringify(e.rel)}: mknod failed${stderr ? `: ${stderr}` : ''}`, 'FAILED_PRECONDITION', { cause: err });
    }
  }
  const fd = openExact(target, { expected: `${readlinkSync(parent)}/${name}` });
  if (fd === undefined) throw new BuildError(`cannot copy ${JSON.stringify(e.rel)}: its destination changed while being written`);
  try {
    chownSync(fdPath(fd), owner.uid, owner.gid);
    chmodSync(fdPath(fd), mode); // after chown, which clears setuid and setgid
    utimesSync(fdPath(fd), t, t);
  } finally {
    closeSync(fd);
  }
}

/**
 * The second and later names of a hard-link group: a link to the group's copy, reached
 * through its pinned parent directory (link(2) never follows the old name if it were
 * swapped for a symlink, nor the new one).
 */
function linkTo(pins: Pins, parentHost: string, first: { name: string; containerPath: string }, target: string, rel: string): void {
  const existing = lstatSync(target, { throwIfNoEntry: false });
  if (existing?.isDirectory()) throw new BuildError(`cannot copy ${JSON.stringify(rel)} over the directory at its destination`);
  if (existing) unlinkSync(target);
  const fd = pins.hold(parentHost, posix.dirname(first.containerPath));
  try {
    linkSync(`${fdPath(fd)}/${first.name}`, target);
  } finally {
    pins.release(fd);
  }
}

/**
 * Parses a `--chmod` value: octal (`755`, `0644`) or symbolic (`u+x,go-w`, `a=rX`),
 * as BuildKit accepts. Returns a function from the source permission bits to the new ones.
 */
export function parseChmod(spec: string): (mode: number, isDir: boolean) => number {
  if (/^[0-7]{3,4}$/.test(spec)) {
    const m = parseInt(spec, 8);
    return () => m;
  }
  const clauses = spec.split(',');
  const parsed = clauses.map((c) => {
    const m = /^([ugoa]*)([+\-=])([rwxXst]*)$/.exec(c);
    if (!m) throw new BuildError(`invalid --chmod value ${JSON.stringify(spec)}: expected octal digits or symbolic mode like u+x,go-w`);
    return { who: m[1] || 'a', op: m[2], perms: m[3] };
  });
  return (mode: number, isDir: boolean) => {
    let cur = mode;
    for (const { who, op, perms } of parsed) {
      const whoMask =
        (who.includes('u') || who.includes('a') ? 0o4700 : 0) |
        (who.includes('g') || who.includes('a') ? 0o2070 : 0) |
        (who.includes('o') || who.includes('a') ? 0o1007 : 0);
      let bits = 0;
      for (const p of perms) {
        if (p === 'r') bits |= 0o444;
        else if (p === 'w') bits |= 0o222;
        else if (p === 'x') bits |= 0o111;
        else if (p === 'X') bits |= isDir || (mode & 0o111) !== 0 ? 0o111 : 0;
        else if (p === 's') bits |= 0o6000;
        else if (p === 't') bits |= 0o1000;
      }
      bits &= whoMask;
      if (op === '+') cur |= bits;
      else if (op === '-') cur &= ~bits;
      else cur = (cur & ~whoMask) | bits;
    }
    return cur & 0o7777;
  };
}
