import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { comparePaths, sortByPath } from './walk.js';

const bytewise = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

describe('path order', () => {
  it('sortByPath and comparePaths agree with a UTF-8 byte comparison, surrogates and U+E000.. included', () => {
    const pathChar = fc.constantFrom('a', 'b', '/', '-', '.', 'é', '\u{e000}', '\u{fffd}', '\u{1f600}', '\u{10000}', '0');
    const path = fc.array(pathChar, { minLength: 1, maxLength: 6 }).map((cs) => cs.join(''));
    fc.assert(
      fc.property(fc.array(path, { maxLength: 40 }), (paths) => {
        const want = [...paths].sort(bytewise);
        assert.deepEqual(sortByPath([...paths], (p) => p), want);
        assert.deepEqual([...paths].sort(comparePaths), want);
      }),
      { numRuns: 300 },
    );
  });
  it('puts a parent before its children and "a-b" before "a/b" (bytewise, like the layer tars before)', () => {
    assert.deepEqual(sortByPath(['a/b', 'a', 'a-b', 'a\u{1f600}', 'a\u{e000}'], (p) => p), ['a', 'a-b', 'a/b', 'a\u{e000}', 'a\u{1f600}']);
  });
});
