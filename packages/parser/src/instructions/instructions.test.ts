import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DockerfileSyntaxError, expandInstruction, parseDockerfile, parseInstruction, type Instruction } from '../index.js';

const one = (line: string): Instruction => parseInstruction(parseDockerfile(line + '\n').ast.children[0]);
const errAt = (line: string, re: RegExp, col?: number): void => {
  assert.throws(() => one(line), (e: unknown) => e instanceof DockerfileSyntaxError && re.test(e.message) && (col === undefined || e.range.start.col === col));
};

test('FROM with platform and stage name', () => {
  assert.deepEqual(one('FROM --platform=$BUILDPLATFORM golang:1.22 AS Build'), {
    kind: 'FROM', image: 'golang:1.22', stageName: 'build', platform: '$BUILDPLATFORM',
    range: { start: { line: 1, col: 1 }, end: { line: 1, col: 52 } }, raw: 'FROM --platform=$BUILDPLATFORM golang:1.22 AS Build',
  });
  errAt('FROM a AS 1x', /invalid name for build stage/);
  errAt('FROM a b', /FROM requires either one or three arguments/);
});

test('RUN mounts, network, security', () => {
  const r = one('RUN --mount=type=cache,target=/root/.cache,id=go,sharing=locked,mode=0755,uid=1000 --mount=type=secret,id=tok,required --mount=type=tmpfs,target=/t,size=64m --mount=type=bind,from=build,source=/out,target=/in,rw --mount=type=ssh --network=none --security=insecure make');
  assert.equal(r.kind, 'RUN');
  if (r.kind !== 'RUN') return;
  assert.deepEqual(r.cmd, { form: 'shell', args: ['make'] });
  assert.equal(r.network, 'none');
  assert.equal(r.security, 'insecure');
  assert.deepEqual(
    r.mounts.map(({ spec: _s, ...m }) => m),
    [
      { type: 'cache', target: '/root/.cache', id: 'go', sharing: 'locked', mode: 0o755, uid: 1000, readonly: false },
      { type: 'secret', id: 'tok', required: true, readonly: true },
      { type: 'tmpfs', target: '/t', size: 64 * 1024 * 1024, readonly: false },
      { type: 'bind', from: 'build', source: '/out', target: '/in', readonly: false },
      { type: 'ssh', readonly: true },
    ],
  );
  errAt('RUN --mount=type=nfs,target=/x true', /unsupported mount type "nfs"/, 5);
  errAt('RUN --mount=type=bind,target=/x,mode=0700 true', /mode not allowed/);
  errAt('RUN --mount=type=bind,target=/x,sharing=locked true', /invalid cache sharing/);
  errAt('RUN --network=bridge true', /unsupported network mode/);
  errAt('RUN --mont=type=bind true', /unknown flag: --mont/, 5);
  errAt('RUN', /RUN requires at least one argument/);
});

test('RUN mount values with variables are validated after expansion', () => {
  const r = one('RUN --mount=type=cache,target=$DIR,uid=$UID true');
  assert.ok(r.kind === 'RUN');
  if (r.kind !== 'RUN') return;
  assert.equal(r.mounts[0].uid, undefined);
  const e = expandInstruction(r, new Map([['DIR', '/c'], ['UID', '42']]));
  assert.ok(e.kind === 'RUN' && e.mounts[0].uid === 42 && e.mounts[0].target === '/c');
  assert.throws(() => expandInstruction(r, new Map([['DIR', '/c'], ['UID', 'x']])), DockerfileSyntaxError);
});

test('COPY/ADD flags and heredocs', () => {
  const c = one('COPY --from=build --chown=1:2 --chmod=u=rwx,go=rx --link --parents --exclude=*.md --exclude=x a b /dst/');
  assert.ok(c.kind === 'COPY');
  if (c.kind !== 'COPY') return;
  assert.deepEqual([c.sources, c.dest, c.from, c.chown, c.chmod, c.link, c.parents, c.exclude], [['a', 'b'], '/dst/', 'build', '1:2', 'u=rwx,go=rx', true, true, ['*.md', 'x']]);
  const a = one('ADD --checksum=sha256:' + 'a'.repeat(64) + ' --keep-git-dir=true --unpack=false https://x/y.tar /');
  assert.ok(a.kind === 'ADD' && a.keepGitDir && a.unpack === false && a.checksum?.startsWith('sha256:'));
  errAt('COPY --checksum=x a b', /unknown flag: --checksum/);
  errAt('ADD --from=x a b', /unknown flag: --from/);
  errAt('COPY --chmod=999 a b', /invalid chmod/);
  errAt('COPY --link=maybe a b', /expecting boolean value/);
  errAt('COPY a', /at least two arguments/);
  const h = parseInstruction(parseDockerfile('COPY <<-EOF /x\n\tline $V\n\tEOF\n').ast.children[0]);
  assert.ok(h.kind === 'COPY');
  if (h.kind !== 'COPY') return;
  assert.deepEqual([h.sources, h.heredocs[0].content], [[], 'line $V\n']);
  const hx = expandInstruction(h, new Map([['V', '"v"']]));
  assert.ok(hx.kind === 'COPY' && hx.heredocs[0].content === 'line "v"\n');
});

test('ENV/LABEL/ARG forms and expansion', () => {
  const env = one('ENV A=1 B="two words" C=$A');
  assert.ok(env.kind === 'ENV' && !env.legacy);
  const ex = expandInstruction(env, new Map([['A', 'old']]));
  assert.ok(ex.kind === 'ENV');
  if (ex.kind !== 'ENV') return;
  assert.deepEqual(ex.pairs, [{ key: 'A', value: '1' }, { key: 'B', value: 'two words' }, { key: 'C', value: 'old' }]);
  const legacy = one('ENV PATH /a b');
  assert.ok(legacy.kind === 'ENV' && legacy.legacy && legacy.pairs[0].value === '/a b');
  const arg = one('ARG a b=2 c="x y"');
  assert.ok(arg.kind === 'ARG');
  assert.deepEqual(arg.kind === 'ARG' && arg.args, [{ key: 'a' }, { key: 'b', default: '2' }, { key: 'c', default: '"x y"' }]);
  errAt('ENV a=b c', /can't find = in "c"/);
});

test('EXPOSE, HEALTHCHECK, SHELL, ONBUILD, misc', () => {
  const e = one('EXPOSE 80 $P 8000-8010/UDP');
  assert.deepEqual(expandInstruction(e, new Map([['P', '443 53/udp']])).kind === 'EXPOSE' && (expandInstruction(e, new Map([['P', '443 53/udp']])) as { ports: string[] }).ports, ['443/tcp', '53/udp', '80/tcp', '8000-8010/udp']);
  assert.throws(() => expandInstruction(one('EXPOSE 70000'), new Map()), /invalid port range/);
  const h = one('HEALTHCHECK --interval=30s --timeout=1m30s --start-period=5s --start-interval=500ms --retries=3 CMD curl -f http://x/');
  assert.deepEqual(h.kind === 'HEALTHCHECK' && [h.test, h.interval, h.timeout, h.startPeriod, h.startInterval, h.retries], [['CMD-SHELL', 'curl -f http://x/'], 30e9, 90e9, 5e9, 5e8, 3]);
  assert.deepEqual((one('HEALTHCHECK CMD ["a","b"]') as { test: string[] }).test, ['CMD', 'a', 'b']);
  assert.equal((one('HEALTHCHECK NONE') as { test: string }).test, 'NONE');
  errAt('HEALTHCHECK --interval=10us CMD x', /cannot be less than 1ms/);
  errAt('HEALTHCHECK FOO x', /unknown type "FOO"/);
  errAt('SHELL /bin/bash -c', /JSON form/);
  const o = one('ONBUILD RUN echo hi');
  assert.ok(o.kind === 'ONBUILD' && o.expression === 'RUN echo hi' && o.instruction.kind === 'RUN');
  errAt('ONBUILD ONBUILD RUN x', /Chaining ONBUILD|chaining ONBUILD/);
  errAt('ONBUILD FROM x', /FROM isn't allowed/);
  errAt('FRM x', /unknown instruction: FRM \(did you mean FROM\?\)/, 1);
  errAt('WORKDIR', /exactly one argument/);
  assert.deepEqual((one('VOLUME ["/a", "/b"]') as { paths: string[] }).paths, ['/a', '/b']);
  assert.deepEqual((one('CMD ["a", "b"]') as { cmd: unknown }).cmd, { form: 'exec', args: ['a', 'b'] });
  assert.deepEqual((one('ENTRYPOINT exec  a') as { cmd: unknown }).cmd, { form: 'shell', args: ['exec  a'] });
});
