// The builders the peer bench times: tsbuild (this checkout's CLI, daemonless, a private
// store) and a BuildKit baseline behind a docker daemon (the reference dockerd 26 with
// BuildKit 0.13 when it answers on /var/run/docker26.sock, else Debian's dockerd 20.10).
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(REPO_ROOT, 'packages', 'cli', 'bin', 'tsbuild.js');

/**
 * Runs argv with its output going to `log`; resolves { s, maxRssMB, code }. Wall time
 * is measured around the whole process (spawn to exit); maxRSS comes from GNU time.
 */
export function timed(argv, { log, env = process.env }) {
  return new Promise((resolve, reject) => {
    const rssFile = `${log}.rss`;
    const useTime = existsSync('/usr/bin/time');
    const full = useTime ? ['/usr/bin/time', '-f', '%M', '-o', rssFile, ...argv] : argv;
    const out = createWriteStream(log);
    out.on('open', () => {
      const t0 = performance.now();
      const p = spawn(full[0], full.slice(1), { stdio: ['ignore', out, out], env });
      p.on('error', reject);
      p.on('close', (code) => {
        const s = (performance.now() - t0) / 1000;
        out.close();
        let maxRssMB;
        if (useTime) {
          const kb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
          if (Number.isFinite(kb)) maxRssMB = kb / 1024;
        }
        resolve({ s, maxRssMB, code: code ?? 1 });
      });
    });
  });
}

/** Runs a command untimed; throws with its output when it fails. */
export function run(argv, { env = process.env, allowFail = false } = {}) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', env, maxBuffer: 64 << 20 });
  if (!allowFail && (r.error || r.status !== 0)) throw new Error(`${argv.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr || r.stdout || '').trim().slice(-2000)}`);
  return r;
}

/** A daemon's peak RSS (VmHWM), resettable through /proc/PID/clear_refs. */
function daemonPeak(pid) {
  return {
    reset() {
      try {
        writeFileSync(`/proc/${pid}/clear_refs`, '5');
      } catch {
        /* not our kernel's feature or not permitted: the peak then spans the whole run */
      }
    },
    readMB() {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        return m ? Number(m[1]) / 1024 : undefined;
      } catch {
        return undefined;
      }
    },
  };
}

/**
 * The BuildKit baseline. `which`: 'auto' (reference if up, else docker 20.10), 'buildkit'
 * (the reference dockerd 26 only) or 'docker' (Debian's dockerd 20.10 only).
 * Returns undefined (with a printed reason) when no daemon answers.
 */
export function dockerBaseline(which, say) {
  const candidates = [];
  if (which === 'auto' || which === 'buildkit') {
    candidates.push({ name: 'buildkit', label: 'BuildKit 0.13 (reference dockerd 26)', client: '/opt/refdocker/usr/bin/docker', sock: '/var/run/docker26.sock', pidFile: '/var/run/docker26.pid', buildx: true });
  }
  if (which === 'auto' || which === 'docker') {
    candidates.push({ name: 'docker', label: "BuildKit of Debian's dockerd 20.10", client: '/usr/bin/docker', sock: '/var/run/docker.sock', pidFile: '/var/run/docker.pid', buildx: false });
  }
  for (const c of candidates) {
    if (!existsSync(c.client)) {
      say(`baseline ${c.name}: no client at ${c.client}`);
      continue;
    }
    const env = { ...process.env, DOCKER_HOST: `unix://${c.sock}`, DOCKER_BUILDKIT: '1' };
    const info = spawnSync(c.client, ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8', env });
    if (info.status !== 0) {
      say(`baseline ${c.name}: daemon not answering on ${c.sock}`);
      continue;
    }
    const version = info.stdout.trim();
    const pid = existsSync(c.pidFile) ? Number(readFileSync(c.pidFile, 'utf8').trim()) : undefined;
    const docker = (args) => [c.client, ...args];
    const peak = pid ? daemonPeak(pid) : undefined;
    return {
      name: c.name,
      label: `${c.label}, server ${version}`,
      env,
      peak,
      /** makes sure busybox:local exists in the daemon; returns a docker-archive of it */
      async baseArchive(dir) {
        const out = join(dir, 'busybox-local.tar');
        const has = spawnSync(c.client, ['image', 'inspect', 'busybox:local'], { env });
        if (has.status !== 0) {
          const root = join(dir, 'bb-rootfs');
          run(['bash', join(REPO_ROOT, 'scripts', 'make-busybox-rootfs.sh'), root]);
          const tar = spawnSync('tar', ['-C', root, '-c', '.'], { maxBuffer: 1 << 30 });
          const imp = spawnSync(c.client, ['import', '-c', 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', '-', 'busybox:local'], { input: tar.stdout, env });
          if (imp.status !== 0) throw new Error(`docker import busybox:local failed: ${imp.stderr}`);
          await rm(root, { recursive: true, force: true });
        }
        run(docker(['save', 'busybox:local', '-o', out]), { env });
        return out;
      },
      buildArgv(tag, dockerfile, context) {
        return c.buildx
          ? docker(['buildx', 'build', '--network', 'host', '--progress=plain', '--load', '-t', tag, '-f', dockerfile, context])
          : docker(['build', '--network', 'host', '--progress=plain', '-t', tag, '-f', dockerfile, context]);
      },
      saveArgv(tag, out) {
        return docker(['save', tag, '-o', out]);
      },
      async cold(tag) {
        run(docker(['rmi', '-f', tag]), { env, allowFail: true });
        run(docker(['builder', 'prune', '-af']), { env, allowFail: true });
      },
    };
  }
  return undefined;
}

/**
 * tsbuild with a private store under `dir`. Cold runs start from a pristine copy of the
 * store holding only busybox:local, already unpacked (as a daemon's base image is).
 */
export async function tsbuildBuilder(dir, { baseArchive, extraFlags = [] }) {
  const root = join(dir, 'tsbuild-root');
  const pristine = join(dir, 'tsbuild-pristine');
  const env = { ...process.env, TSBUILD_ROOT: root };
  await rm(root, { recursive: true, force: true });
  await rm(pristine, { recursive: true, force: true });
  // run as a user's `tsbuild` runs: the launcher through its shebang (which defers
  // NODE_EXTRA_CA_CERTS, see bin/tsbuild.js), as BuildKit's side runs the docker client
  const cli = (args) => [CLI, ...args];
  if (baseArchive) {
    run(cli(['load', '-i', baseArchive]), { env });
  } else {
    const tmp = await mkdtemp(join(dir, 'bb-'));
    run(['bash', join(REPO_ROOT, 'scripts', 'make-busybox-rootfs.sh'), join(tmp, 'rootfs')]);
    run(cli(['import', '--change', 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', join(tmp, 'rootfs'), 'busybox:local']), { env });
    await rm(tmp, { recursive: true, force: true });
  }
  // unpack the base once (a one-step build that changes nothing leaves no layer)
  const warm = join(dir, 'tsbuild-warm');
  run(['mkdir', '-p', warm]);
  await writeFile(join(warm, 'Dockerfile'), 'FROM busybox:local\nRUN true\n');
  run(cli(['build', '--progress', 'plain', '-t', 'pb-warm', warm]), { env });
  run(cli(['rmi', 'pb-warm']), { env });
  run(['cp', '-a', root, pristine]);
  return {
    name: 'tsbuild',
    label: `tsbuild (this checkout${extraFlags.length ? `, ${extraFlags.join(' ')}` : ''})`,
    env,
    peak: undefined,
    buildArgv(tag, dockerfile, context) {
      return cli(['build', '--progress', 'plain', ...extraFlags, '-t', tag, '-f', dockerfile, context]);
    },
    saveArgv(tag, out) {
      return cli(['save', tag, '-o', out]);
    },
    async cold() {
      await rm(root, { recursive: true, force: true });
      run(['cp', '-a', pristine, root]);
    },
    async cleanup() {
      await rm(root, { recursive: true, force: true });
      await rm(pristine, { recursive: true, force: true });
      await rm(warm, { recursive: true, force: true });
    },
  };
}
