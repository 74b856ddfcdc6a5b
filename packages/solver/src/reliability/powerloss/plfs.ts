/**
 * Test harness for plfs, the power-loss simulating FUSE filesystem next to this file
 * (README.md there gives its durability model). `PowerLossFs.mount` compiles plfs.c with
 * gcc against libfuse3 (once per source version, into a temp directory: no binary is
 * committed), mounts it, and drives it: `cut()` is a power cut followed by a reboot
 * (the mount shows only what was durable), `checkpoint()` a clean sync.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('./plfs.c', import.meta.url)).replace(`${join('dist', '')}`, join('src', ''));

/** What plfs needs on this machine, each with the Debian package that brings it (empty when all is there). */
export function plfsPrereqs(): { what: string; pkg: string; ok: boolean }[] {
  const fs = readFileSync('/proc/filesystems', 'utf8');
  const gcc = spawnSync('sh', ['-c', 'command -v gcc'], { stdio: 'ignore' }).status === 0;
  return [
    { what: 'the fuse filesystem in the kernel (/proc/filesystems) and /dev/fuse', pkg: 'fuse3 (and a kernel with CONFIG_FUSE_FS)', ok: /\tfuse$/m.test(fs) && existsSync('/dev/fuse') },
    { what: 'gcc', pkg: 'gcc', ok: gcc },
    { what: 'the libfuse3 headers (/usr/include/fuse3/fuse_lowlevel.h)', pkg: 'libfuse3-dev', ok: existsSync('/usr/include/fuse3/fuse_lowlevel.h') },
  ];
}

/** Compiles plfs.c (cached by the hash of its source) and returns the binary's path. */
export async function buildPlfs(): Promise<string> {
  const src = readFileSync(SOURCE);
  const dir = join(tmpdir(), `tsbuild-plfs-${createHash('sha256').update(src).digest('hex').slice(0, 16)}`);
  const bin = join(dir, 'plfs');
  if (existsSync(bin)) return bin;
  await mkdir(dir, { recursive: true });
  const tmp = `${bin}.${process.pid}.tmp`;
  const r = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', tmp, SOURCE, '-I/usr/include/fuse3', '-lfuse3', '-lpthread'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc failed to build plfs from ${SOURCE}:\n${r.stderr}`);
  await rename(tmp, bin);
  return bin;
}

/** A mounted plfs. */
export class PowerLossFs {
  readonly mountpoint: string;
  #proc: ChildProcess;
  #lines: string[] = [];
  #waiters: (() => void)[] = [];
  #stderr = '';
  #exited = false;
  /** power cuts so far */
  cuts = 0;

  private constructor(mountpoint: string, proc: ChildProcess) {
    this.mountpoint = mountpoint;
    this.#proc = proc;
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        this.#lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      for (const w of this.#waiters.splice(0)) w();
    });
    proc.stderr!.on('data', (d: Buffer) => (this.#stderr += d.toString()));
    proc.on('exit', () => {
      this.#exited = true;
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  /** Mounts a fresh, empty plfs on `mountpoint` (created if needed). */
  static async mount(mountpoint: string, opts: { seed?: number } = {}): Promise<PowerLossFs> {
    const bin = await buildPlfs();
    await mkdir(mountpoint, { recursive: true });
    const args = [...(opts.seed !== undefined ? ['--seed', String(opts.seed)] : []), mountpoint];
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const fs = new PowerLossFs(mountpoint, proc);
    await fs.#expect('mounted 0');
    return fs;
  }

  async #expect(line: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#lines.indexOf(line);
      if (i >= 0) {
        this.#lines.splice(0, i + 1);
        return;
      }
      if (this.#exited) throw new Error(`plfs exited before saying ${JSON.stringify(line)}: ${this.#stderr}`);
      if (Date.now() > deadline) throw new Error(`plfs did not say ${JSON.stringify(line)} within ${timeoutMs} ms: ${this.#stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /**
   * A power cut and a reboot: every process that uses the mount must be dead already
   * (see {@link killStoreProcesses}). The mount is detached, the filesystem reverts to
   * what was durable, and it is mounted again at the same place. `torn`: each file and
   * directory first keeps a random prefix of its changes since its last fsync.
   */
  async cut(opts: { torn?: boolean } = {}): Promise<void> {
    this.cuts++;
    this.#proc.kill(opts.torn === true ? 'SIGHUP' : 'SIGUSR1');
    await this.#expect(`mounted ${this.cuts}`);
  }

  #checkpoints = 0;

  /** Makes everything durable (a clean `sync`). */
  async checkpoint(): Promise<void> {
    this.#checkpoints++;
    this.#proc.kill('SIGUSR2');
    await this.#expect(`checkpoint ${this.#checkpoints}`);
  }

  /** Unmounts and stops the daemon. */
  async stop(): Promise<void> {
    if (!this.#exited) {
      this.#proc.kill('SIGTERM');
      await new Promise<void>((resolve) => {
        if (this.#exited) resolve();
        else this.#proc.on('exit', () => resolve());
      });
    }
    // a daemon that died leaves a dead mount: detach it
    spawnSync('umount', ['-l', this.mountpoint], { stdio: 'ignore' });
    await rm(this.mountpoint, { recursive: true, force: true }).catch(() => undefined);
  }
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/**
 * What a power cut does to the processes of a build on `root`: kills every process that
 * names the store on its command line (a killed builder's `runc run`), and every process
 * of the runc containers the `builders` (pids) started (their cgroups `tsbuild/tsbuild-<pid>-…`,
 * cgroup v1 or v2; other builds' containers are left alone), then deletes the containers.
 * Call it after the builders themselves are dead.
 */
export function killStoreProcesses(root: string, builders: readonly number[]): void {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.includes(root)) kill(Number(name));
  }
  const runcRoot = join(root, 'runc', 'runc');
  const ids = existsSync(runcRoot) ? readdirSync(runcRoot) : [];
  const groups: string[] = [];
  const base = '/sys/fs/cgroup';
  if (existsSync(join(base, 'cgroup.controllers'))) groups.push(join(base, 'tsbuild'));
  else for (const c of existsSync(base) ? readdirSync(base) : []) groups.push(join(base, c, 'tsbuild'));
  for (const g of groups) {
    for (const id of existsSync(g) ? readdirSync(g) : []) {
      if (!builders.some((pid) => id.startsWith(`tsbuild-${pid}-`))) continue;
      try {
        for (const p of readFileSync(join(g, id, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) kill(Number(p));
      } catch {
        // not a cgroup directory
      }
      if (!ids.includes(id)) ids.push(id);
    }
  }
  for (const id of ids) spawnSync('runc', ['--root', runcRoot, 'delete', '--force', id], { stdio: 'ignore', timeout: 10_000 });
}
