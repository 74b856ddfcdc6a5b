// The peer-comparison scenarios (issue 9), generated exactly as ../shared/peerbench/run.sh
// generates them (same Dockerfiles, same file contents), so the figures compare with its table.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/**
 * The peerbench tree generator's source (shared data beside the repo, read at run time;
 * `PEERS_GEN_SOURCE` names another copy, e.g. for a checkout that is a git worktree).
 */
export const GEN_SOURCE = process.env.PEERS_GEN_SOURCE ?? join(REPO_ROOT, '..', 'shared', 'peerbench', 'gen.c');

/** S1: a small multi-stage Dockerfile (3 RUN, COPY of 20 files). */
export async function genS1(dir) {
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'files'), { recursive: true });
  for (let i = 1; i <= 20; i++) {
    const n = String(i).padStart(2, '0');
    let text = `file ${n}\n`;
    for (let j = 1; j <= 50; j++) text += `line ${j} of file ${n}: lorem ipsum dolor sit amet\n`;
    await writeFile(join(dir, 'files', `f${n}.txt`), text);
  }
  await writeFile(
    join(dir, 'Dockerfile'),
    `FROM busybox:local AS build
WORKDIR /src
COPY files/ ./
RUN cat *.txt | sha256sum > /checksum && wc -l *.txt > /counts
RUN mkdir -p /out && cp -r /src /out/src && cp /checksum /counts /out/ && echo built > /out/stamp

FROM busybox:local
ENV APP_HOME=/app MODE=prod
WORKDIR /app
COPY --from=build /out /app
RUN ls -la /app > /app/listing && test -s /app/checksum
CMD ["cat", "/app/stamp"]
`,
  );
}

/** S3: a context of `files` small files in 100 directories plus tree/changing.txt. */
export async function genS3(dir, files) {
  await rm(dir, { recursive: true, force: true });
  for (let k = 0; k < 100; k++) await mkdir(join(dir, 'tree', `d${String(k).padStart(2, '0')}`), { recursive: true });
  const pending = [];
  for (let i = 0; i < files; i++) {
    const f = join(dir, 'tree', `d${String(i % 100).padStart(2, '0')}`, `f${String(i).padStart(5, '0')}.txt`);
    pending.push(writeFile(f, `small file ${i}\nsome content line for file ${i}\n`));
    if (pending.length >= 256) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  await writeFile(join(dir, 'tree', 'changing.txt'), '0\n');
  await writeFile(join(dir, 'Dockerfile'), 'FROM busybox:local\nCOPY . /app\nRUN cat /app/tree/changing.txt\n');
}

/** Changes S3's one file; returns the new content (to look for in the build log). */
export async function touchS3(dir, n) {
  const text = `change-${n}-${process.hrtime.bigint()}`;
  await writeFile(join(dir, 'tree', 'changing.txt'), `${text}\n`);
  return text;
}

/**
 * Compiles the peerbench generator (static, so it runs in busybox) into `out`.
 * Returns the binary's path, or a reason it could not be built.
 */
export function buildGen(out) {
  if (!existsSync(GEN_SOURCE)) return { reason: `the peerbench generator ${GEN_SOURCE} is missing` };
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(GEN_SOURCE).mtimeMs) return { path: out };
  const r = spawnSync('gcc', ['-O2', '-static', '-o', out, GEN_SOURCE], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return { reason: `gcc -static failed (Debian package gcc, libc6-dev): ${r.error?.message ?? r.stderr.trim()}` };
  return { path: out };
}

/** S4: one RUN writing `mib` MiB in `files` files with the peerbench generator. */
export async function genS4(dir, gen, mib, files) {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await copyFile(gen, join(dir, 'gen'));
  spawnSync('chmod', ['755', join(dir, 'gen')]);
  await writeFile(join(dir, 'Dockerfile'), `FROM busybox:local\nCOPY gen /usr/local/bin/gen\nRUN gen /data ${mib} ${files} 1\n`);
}

/** S6: four independent stages each `RUN sleep 1`, then a final stage copying from all. */
export async function genS6(dir) {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  let text = '';
  for (const s of ['a', 'b', 'c', 'd']) text += `FROM busybox:local AS ${s}\nRUN sleep 1 && echo ${s} > /${s}\n\n`;
  text += 'FROM busybox:local\n';
  for (const s of ['a', 'b', 'c', 'd']) text += `COPY --from=${s} /${s} /${s}\n`;
  text += 'CMD ["cat", "/a", "/b", "/c", "/d"]\n';
  await writeFile(join(dir, 'Dockerfile'), text);
}
