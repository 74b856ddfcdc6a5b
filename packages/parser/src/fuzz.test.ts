/**
 * Robustness: the parser and expander only ever throw their own error types,
 * and stay linear on pathological input.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  DockerfileSyntaxError, ShellExpansionError, UnknownTargetError, buildStageGraph, expandInstruction, expandWord,
  expandWords, lint, parseDockerfile, toStages,
} from './index.js';

const ownError = (e: unknown): boolean => e instanceof DockerfileSyntaxError || e instanceof ShellExpansionError || e instanceof UnknownTargetError;

function fullPipeline(text: string): void {
  try {
    const { ast } = parseDockerfile(text);
    const r = toStages(ast);
    buildStageGraph(r);
    for (const s of r.stages) for (const i of s.instructions) expandInstruction(i, new Map([['A', 'x y']]));
    lint(text);
  } catch (e) {
    if (!ownError(e)) throw e;
  }
}

const fragments = [
  'FROM ', 'RUN ', 'COPY ', 'ADD ', 'ENV ', 'ARG ', 'LABEL ', 'ONBUILD ', 'HEALTHCHECK ', 'EXPOSE ', 'CMD ', 'SHELL ',
  'WORKDIR ', 'USER ', 'VOLUME ', 'STOPSIGNAL ', 'MAINTAINER ', '--mount=', 'type=cache,', 'target=/x', '--from=', '--chmod=',
  '--platform=', ' AS ', 'a', 'b=c', '$A', '${A:-x}', '${A#', '}', '"', "'", '\\', '`', '\n', '\r\n', ' ', '\t', '[', ']', '"x"', ',',
  '<<EOF', '<<-EOF', "<<'E'", 'EOF', '\n\tEOF', '# escape=`\n', '# syntax=x\n', '# check=skip=all\n', '#', '\u0000', '\uFEFF', '\ud800', '한',
];

test('property: arbitrary Dockerfile-ish text only ever throws our error types', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...fragments), { maxLength: 60 }), (parts) => {
      fullPipeline(parts.join(''));
      fullPipeline('FROM a\n' + parts.join(''));
    }),
    { numRuns: 1500, seed: 42 },
  );
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
      fullPipeline(s);
    }),
    { numRuns: 500, seed: 7 },
  );
});

test('property: expandWord/expandWords only throw ShellExpansionError', () => {
  const env = new Map([['A', 'a b'], ['E', '']]);
  const chars = ['$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '*', 'A', 'E', 'x', '"', "'", '\\', ' ', '\n'];
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...chars), { maxLength: 40 }), (cs) => {
      const w = cs.join('');
      for (const f of [expandWord, expandWords]) {
        try {
          f(w, env);
        } catch (e) {
          if (!(e instanceof ShellExpansionError)) throw e;
        }
      }
    }),
    { numRuns: 3000, seed: 1 },
  );
});

function timed(name: string, budgetMs: number, f: () => void): void {
  const t0 = performance.now();
  f();
  const ms = performance.now() - t0;
  assert.ok(ms < budgetMs, `${name} took ${ms.toFixed(0)} ms (budget ${budgetMs} ms)`);
}

test('pathological inputs stay linear and bounded', () => {
  timed('10,000-line continuation', 2000, () => {
    const { ast } = parseDockerfile('FROM a\nRUN echo a \\\n' + 'b \\\n'.repeat(10_000) + 'end\n');
    assert.equal(ast.children[1].endLine, 10_003);
  });
  timed('200,000-line continuation', 4000, () => {
    parseDockerfile('FROM a\nRUN echo a \\\n' + 'b \\\n'.repeat(200_000) + 'end\n');
  });
  timed('100,000 empty continuation lines', 2000, () => {
    const { warnings } = parseDockerfile('FROM a\nRUN a \\\n' + '\n'.repeat(100_000) + 'b\n');
    assert.equal(warnings[0].rule, 'NoEmptyContinuation');
  });
  timed('1 MB LABEL line', 3000, () => {
    const big = 'x'.repeat(1 << 20);
    const { ast } = parseDockerfile(`FROM a\nLABEL a="${big}"\n`);
    const r = toStages(ast);
    const l = expandInstruction(r.stages[0].instructions[0], new Map());
    assert.ok(l.kind === 'LABEL' && l.pairs[0].value.length === 1 << 20);
  });
  timed('1 MB heredoc line', 3000, () => {
    const { ast } = parseDockerfile(`FROM a\nRUN <<EOF\n${'y'.repeat(1 << 20)}\nEOF\n`);
    assert.equal(ast.children[1].heredocs[0].content.length, (1 << 20) + 1);
  });
  timed('deeply nested ${}', 2000, () => {
    const deep = '${a:-'.repeat(100_000) + 'x' + '}'.repeat(100_000);
    assert.throws(() => expandWord(deep, new Map()), ShellExpansionError);
    const ok = '${a:-'.repeat(500) + 'x' + '}'.repeat(500);
    assert.equal(expandWord(ok, new Map()), 'x');
  });
  timed('catastrophic glob pattern', 2000, () => {
    const v = 'a'.repeat(100_000);
    assert.equal(expandWord('${V%%*a*a*a*a*a*a*a*a*b}', new Map([['V', v]])), v);
    assert.equal(expandWord('${V/*a*a*a*a*b/x}', new Map([['V', v]])), v);
  });
  timed('invalid UTF-8 and NULs', 2000, () => {
    const bytes = new Uint8Array([0x46, 0x52, 0x4f, 0x4d, 0x20, 0x61, 0x0a, 0x52, 0x55, 0x4e, 0x20, 0xff, 0xfe, 0x00, 0xc3, 0x28, 0x0a]);
    const text = new TextDecoder().decode(bytes);
    const { ast } = parseDockerfile(text);
    assert.equal(ast.children.length, 2);
    fullPipeline('FROM a\nLABEL x="\u0000\ud800"\nENV \u0000=1\n');
  });
  timed('exponential ARG chain is capped', 4000, () => {
    const env = new Map([['A0', 'x'.repeat(16)]]);
    let caught = false;
    try {
      for (let i = 1; i <= 40; i++) env.set(`A${i}`, expandWord(`\${A${i - 1}}\${A${i - 1}}`, env));
    } catch (e) {
      assert.ok(e instanceof ShellExpansionError);
      caught = true;
    }
    assert.ok(caught);
  });
});
