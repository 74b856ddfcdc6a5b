// parallel-stages: four independent stages that each `RUN sleep 1`, then a final stage
// copying from all four (issue 5: "parallel stages finish in about the time of the slowest").
// Measures, in-process with the library, how long after the build starts the four sleeping
// steps are all done (best of 3 runs, --no-cache), and the whole build. ratio = that time /
// 1 s (the slowest stage); target 1.5. Needs root (RUN steps and overlay snapshots).
import { spawnSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchDir, fmt, report } from './lib/common.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = join(here, '..');
const tsc = spawnSync('npx', ['tsc', '-b', 'packages/solver'], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
const { BuildStore, build, importRootfs } = await import('@tsbuild/solver');

if (process.getuid?.() !== 0) {
  console.log('parallel-stages: skipped: needs root (RUN steps and overlay snapshots)');
  report({ bench: 'parallel-stages', skipped: 'needs root' });
  process.exit(0);
}
const base = await benchDir();
const storeRoot = join(base, 'parallel-store');
await rm(storeRoot, { recursive: true, force: true });
const store = await BuildStore.open(storeRoot);
try {
  const rootfs = join(base, 'parallel-busybox-rootfs');
  await rm(rootfs, { recursive: true, force: true });
  spawnSync('bash', [join(root, 'scripts', 'make-busybox-rootfs.sh'), rootfs], { stdio: 'inherit' });
  await importRootfs(store, rootfs, { tags: ['busybox:local'], config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] }, sourceDateEpoch: 0 });
  await rm(rootfs, { recursive: true, force: true });

  const stages = [1, 2, 3, 4].map((i) => `FROM busybox:local AS s${i}\nRUN sleep 1 && echo ${i} > /out${i}\n`).join('');
  const dockerfileText = `${stages}FROM busybox:local\n${[1, 2, 3, 4].map((i) => `COPY --from=s${i} /out${i} /\n`).join('')}`;
  // warm up: the executor's runtime check and the unpacked base
  await build(store, { context: base, dockerfileText: 'FROM busybox:local\nRUN true\n', noCache: true });
  const stagesMs = [];
  const totalMs = [];
  for (let i = 0; i < 3; i++) {
    const done = [];
    const t0 = Date.now();
    await build(store, {
      context: base,
      dockerfileText,
      noCache: true,
      onProgress: (e) => {
        if (e.type === 'vertex' && e.completed !== undefined && /sleep 1/.test(e.name)) done.push(e.completed);
      },
    });
    totalMs.push(Date.now() - t0);
    stagesMs.push(Math.max(...done) - t0);
  }
  const best = Math.min(...stagesMs);
  console.log(`four sleep-1 stages done after ${stagesMs.join(', ')} ms; whole builds ${totalMs.join(', ')} ms`);
  report({ bench: 'parallel-stages', ratio: fmt(best / 1000), target: 1.5, stagesMs, totalMs });
} finally {
  await store.close();
  await rm(storeRoot, { recursive: true, force: true });
}
