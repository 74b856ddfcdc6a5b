import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DockerfileSyntaxError, dumpAst, parseDockerfile, astToJson } from '../index.js';

const parse = (s: string) => parseDockerfile(s).ast;

test('heredocs: several per line, quoted delimiters, chomp, fd', () => {
  const ast = parse('FROM x\nCOPY <<A <<"B" /dest/\na1\nA\nb $x\nB\nRUN <<-EOF 3<<X cat\n\techo hi\n\tEOF\nx\nX\nRUN ["<<EOF"]\n');
  const copy = ast.children[1];
  assert.deepEqual(copy.heredocs.map((h) => [h.name, h.content, h.expand, h.chomp]), [
    ['A', 'a1\n', true, false],
    ['B', 'b $x\n', false, false],
  ]);
  const run = ast.children[2];
  assert.deepEqual(run.heredocs.map((h) => [h.name, h.content, h.chomp, h.fileDescriptor]), [
    ['EOF', '\techo hi\n', true, 0],
    ['X', 'x\n', false, 3],
  ]);
  assert.equal(run.startLine, 7);
  assert.equal(run.endLine, 11);
  assert.equal(ast.children[3].heredocs.length, 0);
  assert.equal(dumpAst(ast).split('\n')[3], '(run "<<EOF")');
});

test('unterminated heredoc names its start line', () => {
  assert.throws(() => parse('FROM x\nRUN <<EOF\necho\n'), (e: unknown) => e instanceof DockerfileSyntaxError && e.range.start.line === 2 && /unterminated heredoc/.test(e.message));
});

test('directives: escape, duplicates, invalid, syntax and check', () => {
  assert.equal(parse('# escape=`\nFROM x\nRUN a `\n  b\n').directives.escape, '`');
  assert.throws(() => parse('# escape=\\\n# escape=`\nFROM x\n'), /only one escape parser directive/);
  assert.throws(() => parse('# escape=x\nFROM x\n'), /invalid escape token/);
  for (const s of ['docker/dockerfile:1', 'docker/dockerfile:1.7-labs', 'docker.io/docker/dockerfile:1.9.0', 'docker/dockerfile', 'docker.io/docker/dockerfile:1-labs']) {
    assert.equal(parse(`# syntax=${s}\nFROM x\n`).directives.syntax, s);
  }
  assert.throws(() => parse('# syntax=example.com/frontend:2\nFROM x\n'), (e: unknown) => e instanceof DockerfileSyntaxError && e.message.includes('example.com/frontend:2') && e.range.start.line === 1);
  assert.deepEqual(parse('# check=skip=JSONArgsRecommended,StageNameCasing;error=true\nFROM x\n').directives.check, { skip: ['JSONArgsRecommended', 'StageNameCasing'], error: true });
  // a directive after an instruction is only a comment
  assert.equal(parse('FROM x\n# escape=`\nRUN a \\\n b\n').children[1].original, 'RUN a  b');
});

test('errors carry line/column and format with a caret', () => {
  const src = 'FROM x\nCMD [ "a", 1 ]\n';
  try {
    parse(src);
    assert.fail('expected an error');
  } catch (e) {
    assert.ok(e instanceof DockerfileSyntaxError);
    assert.equal(e.code, 'INVALID_ARGUMENT');
    assert.deepEqual(e.range.start, { line: 2, col: 5 });
    assert.equal(e.format(src), 'Dockerfile:2:5: when using JSON array syntax, arrays must be comprised of strings only\n2 | CMD [ "a", 1 ]\n        ^');
  }
});

test('flag ranges point into continuation lines', () => {
  const ast = parse('FROM x\nCOPY \\\n  --from=a \\\n   --chown=1 a b\n');
  assert.deepEqual(ast.children[1].flagRanges.map((r) => r.start), [{ line: 3, col: 3 }, { line: 4, col: 4 }]);
});

test('BOM, CRLF, empty continuation warning', () => {
  const { ast, warnings } = parseDockerfile('\uFEFFFROM x\r\nRUN a \\\r\n\r\n b\r\n');
  assert.equal(dumpAst(ast), '(from "x")\n(run "a  b")');
  assert.equal(warnings[0].rule, 'NoEmptyContinuation');
});

test('astToJson is plain, stable JSON', () => {
  const j = astToJson(parse('FROM x AS b\nONBUILD RUN echo hi\n')) as { instructions: { instruction: string; args: unknown[] }[] };
  assert.equal(j.instructions[1].instruction, 'ONBUILD');
  assert.deepEqual(JSON.parse(JSON.stringify(j)), j);
});
