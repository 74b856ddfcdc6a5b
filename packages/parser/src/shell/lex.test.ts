import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expandWord, expandWords, lexWord } from './lex.js';
import { ShellExpansionError } from '../errors.js';

const env = new Map([['A', 'a b'], ['PATH_', '/usr/local/bin:/usr/bin'], ['F', 'file.tar.gz'], ['E', '']]);

test('pattern operators', () => {
  assert.equal(expandWord('${F%.*}', env), 'file.tar');
  assert.equal(expandWord('${F%%.*}', env), 'file');
  assert.equal(expandWord('${F#*.}', env), 'tar.gz');
  assert.equal(expandWord('${F##*.}', env), 'gz');
  assert.equal(expandWord('${F/a/X}', env), 'file.tXr.gz');
  assert.equal(expandWord('${F//a/X}', env), 'file.tXr.gz');
  assert.equal(expandWord('${PATH_//\\//_}', env), '_usr_local_bin:_usr_bin');
  assert.equal(expandWord('${F/*./}', env), 'gz');
  assert.equal(expandWord('${F//?/x}', env), 'xxxxxxxxxxx');
});

test('defaults, alternates and errors', () => {
  assert.equal(expandWord('${E:-d}', env), 'd');
  assert.equal(expandWord('${E-d}', env), '');
  assert.equal(expandWord('${E:+x}', env), '');
  assert.equal(expandWord('${E+x}', env), 'x');
  assert.throws(() => expandWord('${U?boom}', env), (e: unknown) => e instanceof ShellExpansionError && /U: boom/.test(e.message));
  assert.deepEqual(expandWords('x $A "$A"', env), ['x', 'a', 'b', 'a b']);
});

test('raw modes used for heredoc detection', () => {
  assert.equal(lexWord(`'EOF'`, new Map(), { rawQuotes: true }).result, `'EOF'`);
  assert.equal(lexWord('$X ${Y:-z}', new Map(), { skipUnsetEnv: true }).result, '$X ${Y:-z}');
  assert.equal(lexWord('a\\ b', new Map(), { rawEscapes: true }).result, 'a\\ b');
});

test('backtick escape', () => {
  assert.equal(expandWord('a`$b\\c', new Map(), { escape: '`' }), 'a$b\\c');
});
