import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IgnoreMatcher, parseDockerignore } from './dockerignore.js';

// The 34 rows of ../shared/conformance/README.md section 4 (moby/patternmatcher's tables):
// patterns, path, whether the path (or a parent directory) is excluded; `null` = the matcher must not build.
const ROWS: [string[], string, boolean | null][] = [
  [['*'], 'fileutils.go', true],
  [['*.go'], 'fileutils.go', true],
  [['!fileutils.go', '*.go'], 'fileutils.go', true],
  [['*.go', '!fileutils.go'], 'fileutils.go', false],
  [['docs', '!docs/README.md'], 'docs/README.md', false],
  [['docs/*', '!docs/README.md'], 'docs/README.md', false],
  [['*.go'], '.', false],
  [['!'], 'x', null],
  [['['], 'x', null],
  [['**'], 'dir/file', true],
  [['**/'], 'file', true],
  [['dir/**'], 'dir/dir2/file', true],
  [['abc/**'], 'abc', false],
  [['abc/**'], 'abc/def/ghi', true],
  [['**/dir'], 'dir/file', true],
  [['**/dir2/*'], 'dir/dir2/file', true],
  [['**file'], 'dir/dir/file', true],
  [['**/**/*.txt2'], 'dir/dir/file.txt', false],
  [['**/*.txt'], 'file.txt', true],
  [['a**/*.txt'], 'a/dir/dir/file.txt', true],
  [['a/*.txt'], 'a/dir/file.txt', false],
  [['a[b-d]e'], 'ace', true],
  [['a[b-d]e'], 'aae', false],
  [['a[^b-d]e'], 'aze', true],
  [['.*'], 'foo', false],
  [['abc.def'], 'abcZdef', false],
  [['abc?def'], 'abcdef', false],
  [['a\\\\'], 'a\\', true],
  [['a\\*b'], 'a*b', true],
  [['**/.foo'], 'bar.foo', false],
  [['a.|)$(}+{bc'], 'a.|)$(}+{bc', true],
  [['**', '!util/docker/web'], 'util/docker/web/foo', false],
  [['**', '!util/docker/web', 'util/docker/web/foo'], 'util/docker/web/foo', true],
  [['**', '!dist/*.whl'], 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', false],
];

describe('.dockerignore matching (conformance table, section 4)', () => {
  it('has all 34 rows', () => assert.equal(ROWS.length, 34));
  for (const [i, [patterns, path, want]] of ROWS.entries()) {
    it(`row ${i + 1}: ${JSON.stringify(patterns)} ${JSON.stringify(path)}`, () => {
      if (want === null) {
        assert.throws(() => new IgnoreMatcher(parseDockerignore(patterns.join('\n'))));
        return;
      }
      const m = new IgnoreMatcher(parseDockerignore(patterns.join('\n')));
      assert.equal(m.ignores(path), want);
    });
  }

  it('reads files like Docker: BOM, comments, trimming, leading slashes, cleaning', () => {
    const text = '\ufeff# comment\n  /test2  \n\n! /inverted/abs/path\n a/./b/ \n#x\n!\n';
    assert.deepEqual(parseDockerignore(text), ['test2', '!inverted/abs/path', 'a/b', '!']);
  });
});
