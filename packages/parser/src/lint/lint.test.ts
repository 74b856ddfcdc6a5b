import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lint } from '../index.js';

const rules = (s: string): string[] => lint(s).map((w) => `${w.rule}@${w.range.start.line}`);

test('each rule fires with rule name, message and location', () => {
  const src = [
    'ARG BASE=alpine',           // 1
    'FROM $BASE as Builder',     // 2: FromAsCasing, StageNameCasing
    'MAINTAINER me',             // 3
    'ENV PATH2 /x',              // 4: LegacyKeyValueFormat
    'ARG API_TOKEN',             // 5: SecretsUsedInArgOrEnv
    'WORKDIR app',               // 6: WorkdirRelativePath
    'RUN echo $NOPE',            // 7: not expanded by BuildKit → no UndefinedVar
    'COPY $NOPE2 /x',            // 8: UndefinedVar
    'CMD echo a',                // 9: JSONArgsRecommended, MultipleInstructionsDisallowed
    'CMD ["b"]',                 // 10
    'EXPOSE 80/TCP 127.0.0.1:8080:80', // 11
    'FROM $UNDECLARED AS builder', // 12: UndefinedArgInFrom, DuplicateStageName
    'FROM --platform=linux/amd64 alpine AS scratch', // 13: FromPlatformFlagConstDisallowed, ReservedStageName
    'from --platform=$TARGETPLATFORM alpine', // 14: ConsistentInstructionCasing, RedundantTargetPlatform
    'ARG E=""',
    'FROM ${E}', // 16 InvalidDefaultArgInFrom? E is not global here → UndefinedArgInFrom
    '',
  ].join('\n');
  const got = rules(src);
  for (const want of [
    'FromAsCasing@2', 'StageNameCasing@2', 'MaintainerDeprecated@3', 'LegacyKeyValueFormat@4', 'SecretsUsedInArgOrEnv@5',
    'WorkdirRelativePath@6', 'UndefinedVar@8', 'JSONArgsRecommended@9', 'MultipleInstructionsDisallowed@9', 'ExposeProtoCasing@11',
    'ExposeInvalidFormat@11', 'UndefinedArgInFrom@12', 'DuplicateStageName@12', 'FromPlatformFlagConstDisallowed@13',
    'ReservedStageName@13', 'ConsistentInstructionCasing@14', 'RedundantTargetPlatform@14',
  ]) {
    assert.ok(got.includes(want), `missing ${want} in ${got.join(', ')}`);
  }
  assert.ok(!got.includes('UndefinedVar@7'));
  const w = lint(src).find((x) => x.rule === 'StageNameCasing');
  assert.equal(w?.message, "Stage name 'Builder' should be lowercase");
  assert.equal(w?.url, 'https://docs.docker.com/go/dockerfile/rule/stage-name-casing/');
});

test('InvalidDefaultArgInFrom and check=skip', () => {
  assert.ok(rules('ARG IMG=""\nFROM $IMG\n').includes('InvalidDefaultArgInFrom@2'));
  assert.ok(!rules('ARG TAG=3\nFROM alpine:$TAG\n').includes('InvalidDefaultArgInFrom@2'));
  assert.deepEqual(rules('# check=skip=JSONArgsRecommended\nFROM a\nCMD x\n'), []);
  assert.deepEqual(rules('# check=skip=all\nFROM a\nMAINTAINER x\nCMD x\n'), []);
  assert.deepEqual(rules('FROM a\nCMD ["x"]\n'), []);
});
