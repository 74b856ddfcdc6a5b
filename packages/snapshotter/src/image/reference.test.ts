import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidReferenceError } from '../errors.js';
import { parseImageRef } from './reference.js';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseImageRef', () => {
  const cases: [string, string, string][] = [
    ['busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36', 'busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['index.docker.io/foo/bar:v1', 'docker.io/foo/bar:v1', 'foo/bar:v1'],
    ['foo/bar', 'docker.io/foo/bar:latest', 'foo/bar:latest'],
    ['localhost/foo', 'localhost/foo:latest', 'localhost/foo:latest'],
    ['localhost:5000/a/b/c:t', 'localhost:5000/a/b/c:t', 'localhost:5000/a/b/c:t'],
    ['ghcr.io/o/r@' + D, 'ghcr.io/o/r@' + D, 'ghcr.io/o/r@' + D],
    ['busybox:1@' + D, 'docker.io/library/busybox:1@' + D, 'busybox:1@' + D],
    ['Example.com/x', 'Example.com/x:latest', 'Example.com/x:latest'],
    ['[::1]:5000/x', '[::1]:5000/x:latest', '[::1]:5000/x:latest'],
    ['a__b/c-d.e', 'docker.io/a__b/c-d.e:latest', 'a__b/c-d.e:latest'],
  ];
  for (const [input, canonical, familiar] of cases) {
    it(`${input} → ${canonical}`, () => {
      const r = parseImageRef(input);
      assert.equal(r.canonical, canonical);
      assert.equal(r.familiar, familiar);
    });
  }
  it('fills tag and digest fields', () => {
    assert.deepEqual(parseImageRef('busybox'), { domain: 'docker.io', path: 'library/busybox', tag: 'latest', canonical: 'docker.io/library/busybox:latest', familiar: 'busybox:latest' });
    const r = parseImageRef(`x@${D}`);
    assert.equal(r.tag, undefined);
    assert.equal(r.digest, D);
  });
  for (const bad of ['', 'UPPER', 'foo/UPPER', 'a:b:c', 'x:', ':x', 'x@sha256:abc', '-x', 'a/', '/a', 'a//b', 'x:-tag', 'a'.repeat(64), `x:${'t'.repeat(129)}`, 'a b', `${'a'.repeat(256)}`]) {
    it(`rejects ${JSON.stringify(bad.slice(0, 40))}`, () => {
      assert.throws(() => parseImageRef(bad), (e: unknown) => e instanceof InvalidReferenceError && e.code === 'INVALID_ARGUMENT');
    });
  }
});
