/**
 * BuildKit conformance: the parser's AST dumps and the shell lexer's vectors,
 * read at run time from ../shared/conformance (relative to the repository root).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dumpAst, parseDockerfile, DockerfileSyntaxError } from './index.js';
import { lexWord } from './shell/lex.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const conf = join(repoRoot, '..', 'shared', 'conformance');
const parserDir = join(conf, 'buildkit-parser');
const shellDir = join(conf, 'buildkit-shell');

function requireData(dir: string): void {
  assert.ok(existsSync(dir), `conformance data missing at ${dir} (expected the shared/ checkout next to the repository)`);
}

/** Decode like Go reads bytes: UTF-8, keeping the text as-is. */
const read = (p: string): string => new TextDecoder('utf-8').decode(readFileSync(p));

test('buildkit parser testfiles', () => {
  requireData(parserDir);
  const posDir = join(parserDir, 'testfiles');
  const negDir = join(parserDir, 'testfiles-negative');
  const pos = readdirSync(posDir).sort();
  const neg = readdirSync(negDir).sort();
  const failures: string[] = [];
  let okPos = 0;
  for (const c of pos) {
    const expected = read(join(posDir, c, 'result'));
    try {
      const { ast } = parseDockerfile(read(join(posDir, c, 'Dockerfile')), { file: `${c}/Dockerfile` });
      const got = dumpAst(ast) + '\n';
      if (got === expected) okPos++;
      else failures.push(`${c}: dump differs\n--- expected\n${expected}--- got\n${got}`);
    } catch (e) {
      failures.push(`${c}: threw ${(e as Error).message}`);
    }
  }
  let okNeg = 0;
  for (const c of neg) {
    try {
      parseDockerfile(read(join(negDir, c, 'Dockerfile')), { file: `${c}/Dockerfile` });
      failures.push(`negative ${c}: parsed without error`);
    } catch (e) {
      if (e instanceof DockerfileSyntaxError) okNeg++;
      else failures.push(`negative ${c}: threw a ${(e as Error).name}, not a DockerfileSyntaxError`);
    }
  }
  console.log(`parser conformance: ${okPos}/${pos.length} positive, ${okNeg}/${neg.length} negative`);
  assert.ok(pos.length >= 33 && neg.length >= 4, 'expected at least 33 positive and 4 negative cases');
  assert.deepEqual(failures, []);
});

test('buildkit testfile-line line numbers', () => {
  requireData(parserDir);
  const { ast } = parseDockerfile(read(join(parserDir, 'testfile-line', 'Dockerfile')));
  assert.equal(ast.startLine, 5);
  assert.equal(ast.endLine, 31);
  assert.deepEqual(
    ast.children.map((c) => [c.startLine, c.endLine]),
    [[5, 5], [11, 12], [17, 31]],
  );
});

test('buildkit shell envVarTest (A and U rows)', () => {
  requireData(shellDir);
  const env = new Map([['PWD', '/home'], ['SHELL', 'bash'], ['KOREAN', '한국어'], ['NULL', '']]);
  const failures: string[] = [];
  let total = 0;
  let ok = 0;
  for (const rawLine of read(join(shellDir, 'envVarTest')).split('\n')) {
    if (rawLine.startsWith('#')) continue;
    const line = rawLine.trim();
    if (line === '') continue;
    const f = line.split('|');
    assert.equal(f.length, 3, `bad envVarTest line ${line}`);
    const [platform, input, expected] = f.map((x) => x.trim());
    assert.ok(['A', 'U', 'W'].includes(platform), `bad platform ${platform}`);
    if (platform === 'W') continue;
    total++;
    let got: string;
    try {
      got = lexWord(input, env).result;
    } catch (e) {
      got = 'error';
      if (!(e instanceof Error) || e.name !== 'ShellExpansionError') got = `threw ${String(e)}`;
    }
    if (got === expected) ok++;
    else failures.push(`${input}: expected ${JSON.stringify(expected)} got ${JSON.stringify(got)}`);
  }
  console.log(`shell envVarTest: ${ok}/${total}`);
  assert.deepEqual(failures, []);
});

test('buildkit shell wordsTest', () => {
  requireData(shellDir);
  const env = new Map<string, string>();
  const failures: string[] = [];
  let total = 0;
  let ok = 0;
  for (const line of read(join(shellDir, 'wordsTest')).split('\n')) {
    if (line.startsWith('#')) continue;
    if (line.startsWith('ENV ')) {
      const entry = line.slice(3).replace(/^ +/, '');
      const eq = entry.indexOf('=');
      env.set(entry.slice(0, eq), entry.slice(eq + 1));
      continue;
    }
    if (line === '') continue; // the final newline of the file
    const parts = line.split('|');
    assert.equal(parts.length, 2, `bad wordsTest line ${line}`);
    const input = parts[0].trim();
    const expected = parts[1].replace(/^ +/, '').split(',');
    total++;
    let got: string[];
    try {
      got = lexWord(input, env).words;
    } catch {
      got = ['error'];
    }
    if (JSON.stringify(got) === JSON.stringify(expected)) ok++;
    else failures.push(`${input}: expected ${JSON.stringify(expected)} got ${JSON.stringify(got)}`);
  }
  console.log(`shell wordsTest: ${ok}/${total}`);
  assert.deepEqual(failures, []);
});
