import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildStageGraph, DockerfileSyntaxError, parseDockerfile, toStages, UnknownTargetError } from '../index.js';

const stagesOf = (s: string, opts?: Parameters<typeof toStages>[1]) => toStages(parseDockerfile(s).ast, opts);

test('meta ARGs, build args, platform ARGs in FROM', () => {
  const r = stagesOf('ARG VERSION=3.19\nARG IMG=alpine:${VERSION}\nFROM ${IMG} AS Base\nFROM --platform=$BUILDPLATFORM base\n', {
    buildArgs: { VERSION: '3.20' },
    platform: { os: 'linux', arch: 'arm64', variant: 'v8' },
  });
  assert.equal(r.stages[0].base, 'alpine:3.20');
  assert.equal(r.stages[0].name, 'base');
  assert.equal(r.stages[1].platform, 'linux/arm64/v8');
  assert.equal(r.metaEnv.get('TARGETARCH'), 'arm64');
  assert.equal(r.metaArgs.length, 2);
  assert.throws(() => stagesOf('RUN x\nFROM a\n'), /no build stage in current context/);
  assert.throws(() => stagesOf('ARG X\nFROM $X\n'), /should not be blank/);
});

test('graph: deps via FROM, COPY --from (name, index, ARG), RUN --mount from; pruning', () => {
  const r = stagesOf(
    'FROM alpine AS a\nFROM a AS b\nFROM scratch AS unused\nFROM busybox AS c\nARG SRC=b\nCOPY --from=$SRC /x /x\nCOPY --from=0 /y /y\nRUN --mount=type=bind,from=d,target=/m true\nFROM alpine AS d\n',
  );
  const g = buildStageGraph(r, { target: 'c' });
  assert.equal(g.target, 3);
  assert.deepEqual(g.deps.get(3), [0, 1, 4]);
  assert.deepEqual(g.order, [0, 1, 4, 3]);
  assert.ok(!g.order.includes(2));
  assert.deepEqual(buildStageGraph(r).order, [4]);
  assert.deepEqual(buildStageGraph(r, { target: 'c', buildArgs: { SRC: 'unused' } }).deps.get(3), [0, 2, 4]);
  assert.throws(() => buildStageGraph(r, { target: 'nope' }), (e: unknown) => e instanceof UnknownTargetError && e.code === 'NOT_FOUND');
});

test('graph: cycles and bad indexes are errors; a stage named like its base image is not a self-reference', () => {
  const cyc = stagesOf('FROM alpine AS a\nCOPY --from=b / /\nFROM alpine AS b\nCOPY --from=a / /\n');
  assert.throws(() => buildStageGraph(cyc, { target: 'a' }), (e: unknown) => e instanceof DockerfileSyntaxError && /circular dependency/.test(e.message));
  assert.throws(() => buildStageGraph(stagesOf('FROM a\nCOPY --from=5 / /\n')), /invalid stage index 5/);
  const self = stagesOf('FROM node AS node\nRUN true\n');
  assert.deepEqual(buildStageGraph(self).deps.get(0), []);
});
