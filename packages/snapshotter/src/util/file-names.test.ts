/**
 * Names that are not UTF-8 are refused, never renamed or dropped: by the tree walk (with
 * the addon and without), by the tar reader (ustar fields, GNU long names, pax records)
 * and so by the applier. A real U+FFFD in a name is valid UTF-8 and passes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { applyLayer } from '../apply/apply-layer.js';
import { UnsupportedFileNameError } from '../errors.js';
import { treeTarStream } from '../tar/tree.js';
import { scanTree } from '../tar/walk.js';
import { escapeName, utf8Name } from './file-names.js';
import { native, setNativeEnabled } from './native.js';

/** A ustar header (checksum filled in) for a regular file of `size` bytes. */
function header(name: Buffer, size: number, flag = '0'): Buffer {
  const b = Buffer.alloc(512);
  name.copy(b, 0);
  b.write('0000644\0', 100, 'latin1');
  b.write('0000000\0', 108, 'latin1');
  b.write('0000000\0', 116, 'latin1');
  b.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  b.write('00000000000\0', 136, 'latin1');
  b.write(flag, 156, 'latin1');
  b.write('ustar\x0000', 257, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

/** An entry: its header and its body padded to 512 bytes. */
function entry(name: Buffer, body: Buffer, flag = '0'): Buffer {
  return Buffer.concat([header(name, body.length, flag), body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
}

function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let n = rest.length + 1;
  while (String(n).length + rest.length !== n) n++;
  return Buffer.concat([Buffer.from(String(n)), rest]);
}

const tarOf = (...entries: Buffer[]): Readable => Readable.from([Buffer.concat([...entries, Buffer.alloc(1024)])]);
const latin1 = Buffer.from('lat\xe9in', 'latin1');

describe('file names that are not UTF-8', () => {
  let base: string;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tsbuild-names-'));
  });
  after(async () => {
    setNativeEnabled(true);
    await rm(base, { recursive: true, force: true });
  });

  it('utf8Name decodes UTF-8 (a real U+FFFD included) and refuses other bytes, escaped', () => {
    assert.equal(utf8Name(Buffer.from('a\uFFFDb é'), 'test'), 'a\uFFFDb é');
    assert.throws(() => utf8Name(Buffer.concat([Buffer.from('d/'), latin1]), 'test'), (e: unknown) => {
      assert.ok(e instanceof UnsupportedFileNameError);
      assert.equal(e.path, '"d/lat\\xe9in"');
      assert.match(e.message, /^test: the file name "d\/lat\\xe9in" is not valid UTF-8/);
      return true;
    });
    assert.equal(escapeName(Buffer.from('a"b\\c\n')), '"a\\x22b\\x5cc\\x0a"');
  });

  for (const useNative of [true, false]) {
    it(`the tree walk refuses such a name (${useNative ? 'addon' : 'JS walk'}) and keeps a real U+FFFD`, async (t) => {
      if (useNative && native() === undefined) {
        // npm ci builds it; only a developer's checkout without it skips
        assert.notEqual(process.env.CI, 'true', 'the native addon is not built');
        return t.skip('the addon is not built');
      }
      setNativeEnabled(useNative);
      try {
        const dir = await mkdtemp(join(base, 'walk-'));
        await mkdir(join(dir, 'sub'));
        await writeFile(join(dir, 'sub/ok\uFFFD'), 'x');
        assert.deepEqual([...(await scanTree(dir)).keys()], ['sub', 'sub/ok\uFFFD']);
        await writeFile(Buffer.concat([Buffer.from(join(dir, 'sub/')), latin1]), 'y');
        await assert.rejects(scanTree(dir), (e: unknown) => e instanceof UnsupportedFileNameError && e.path === '"sub/lat\\xe9in"');
      } finally {
        setNativeEnabled(true);
      }
    });
  }

  it('a tar of a tree refuses a symlink whose target is not UTF-8', async () => {
    const dir = await mkdtemp(join(base, 'link-'));
    await symlink(latin1, join(dir, 'l'));
    await assert.rejects(
      (async () => {
        for await (const _ of treeTarStream(dir));
      })(),
      (e: unknown) => e instanceof UnsupportedFileNameError && e.path === '"lat\\xe9in"' && e.symlink === 'l' && /the target "lat\\xe9in" of the symlink "l" is not valid UTF-8/.test(e.message),
    );
  });

  it('the applier refuses such a name in a ustar field, a GNU long name or a pax record, and writes nothing', async () => {
    const layers: Array<[string, () => Readable]> = [
      ['ustar name', () => tarOf(entry(latin1, Buffer.from('x')))],
      ['GNU long name', () => tarOf(entry(Buffer.from('././@LongLink'), Buffer.concat([latin1, Buffer.from([0])]), 'L'), entry(Buffer.from('short'), Buffer.from('x')))],
      ['pax path', () => tarOf(entry(Buffer.from('PaxHeaders/x'), paxRecord('path', latin1), 'x'), entry(Buffer.from('x'), Buffer.from('x')))],
      ['pax linkpath', () => tarOf(entry(Buffer.from('PaxHeaders/l'), paxRecord('linkpath', latin1), 'x'), entry(Buffer.from('l'), Buffer.alloc(0), '2'))],
    ];
    for (const [what, layer] of layers) {
      const target = await mkdtemp(join(base, 'apply-'));
      await assert.rejects(applyLayer(layer(), target), (e: unknown) => e instanceof UnsupportedFileNameError && e.path === '"lat\\xe9in"', what);
      assert.deepEqual(await readdir(target), [], what);
    }
  });

  it('a pax path replaces a ustar name that is not UTF-8 (only the name used is checked)', async () => {
    const target = await mkdtemp(join(base, 'apply-'));
    await applyLayer(tarOf(entry(Buffer.from('PaxHeaders/x'), paxRecord('path', Buffer.from('café')), 'x'), entry(latin1, Buffer.from('x'))), target);
    assert.deepEqual(await readdir(target), ['café']);
  });

  it('GNU tar archives of such a name are refused by the applier', async () => {
    const src = await mkdtemp(join(base, 'gnu-'));
    await writeFile(Buffer.concat([Buffer.from(`${src}/`), latin1]), 'z');
    const tar = execFileSync('tar', ['-cf', '-', '-C', src, '.']);
    const target = await mkdtemp(join(base, 'apply-'));
    await assert.rejects(applyLayer(Readable.from([tar]), target), UnsupportedFileNameError);
  });
});
