/** Variable expansion of typed instructions, field by field, as BuildKit's dispatcher does it. */
import { DockerfileSyntaxError, ShellExpansionError } from '../errors.js';
import { lexWord, type EscapeChar } from '../shell/lex.js';
import { parseMount } from './mount.js';
import type { Instruction } from './types.js';
import { validateChmod, ValueError } from './values.js';

/** Options of `expandInstruction`. */
export interface ExpandOptions {
  escape?: EscapeChar;
  /** File name for errors. */
  file?: string;
}

const PORT = /^(\d+)(?:-(\d+))?$/;
const CHECKSUM = /^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$/;

/** Normalise one EXPOSE entry: `[ip:][host:]port[-end][/proto]` → `port[-end]/proto` (proto lowercase, default tcp). */
export function normalizePort(spec: string): string {
  const slash = spec.lastIndexOf('/');
  const proto = slash < 0 ? 'tcp' : spec.slice(slash + 1).toLowerCase();
  let ports = slash < 0 ? spec : spec.slice(0, slash);
  const colon = ports.lastIndexOf(':');
  if (colon >= 0) ports = ports.slice(colon + 1);
  const m = PORT.exec(ports);
  if (!m) throw new ValueError(`invalid port "${spec}": expected port[-end][/tcp|udp|sctp]`);
  const start = Number(m[1]);
  const end = m[2] === undefined ? start : Number(m[2]);
  if (start < 1 || end > 65535 || end < start) throw new ValueError(`invalid port range "${spec}": expected ports between 1 and 65535, start <= end`);
  if (proto !== 'tcp' && proto !== 'udp' && proto !== 'sctp') throw new ValueError(`invalid protocol "${proto}" in "${spec}": expected tcp, udp or sctp`);
  return `${ports}/${proto}`;
}

/**
 * A copy of `instr` with every field BuildKit expands expanded against `env`:
 * ADD/COPY (sources, dest, --from, --chown, --chmod, --checksum, --exclude, heredoc bodies
 * whose delimiter was not quoted), ENV and LABEL keys and values, EXPOSE (split into words),
 * FROM (image, --platform), STOPSIGNAL, USER, VOLUME, WORKDIR, ARG keys and defaults,
 * RUN `--mount` values. RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK/ONBUILD/MAINTAINER are copied unchanged.
 * Expansion also removes quotes and escapes, so call it even with an empty env.
 * Throws `DockerfileSyntaxError` located at the instruction.
 */
export function expandInstruction(instr: Instruction, env: ReadonlyMap<string, string>, opts: ExpandOptions = {}): Instruction {
  const file = opts.file ?? 'Dockerfile';
  const fail = (msg: string, cause?: unknown): never => {
    throw new DockerfileSyntaxError(file, instr.range, msg, { cause });
  };
  const w = (s: string): string => {
    try {
      return lexWord(s, env, { escape: opts.escape }).result;
    } catch (e) {
      if (e instanceof ShellExpansionError) return fail(e.message, e);
      throw e;
    }
  };
  const words = (s: string): string[] => {
    try {
      return lexWord(s, env, { escape: opts.escape }).words;
    } catch (e) {
      if (e instanceof ShellExpansionError) return fail(e.message, e);
      throw e;
    }
  };
  const checked = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if (e instanceof ValueError) return fail(e.message, e);
      throw e;
    }
  };
  switch (instr.kind) {
    case 'FROM': {
      const out = { ...instr, image: w(instr.image) };
      if (instr.platform !== undefined) out.platform = w(instr.platform);
      return out;
    }
    case 'COPY':
    case 'ADD': {
      const out = {
        ...instr,
        sources: instr.sources.map(w),
        dest: w(instr.dest),
        exclude: instr.exclude.map(w),
        heredocs: instr.heredocs.map((h) => {
          if (!h.expand) return { ...h };
          try {
            return { ...h, content: lexWord(h.content, env, { escape: opts.escape, skipProcessQuotes: true }).result };
          } catch (e) {
            if (e instanceof ShellExpansionError) return fail(e.message, e);
            throw e;
          }
        }),
      };
      if (instr.from !== undefined) out.from = w(instr.from);
      if (instr.chown !== undefined) out.chown = w(instr.chown);
      if (instr.chmod !== undefined) {
        const chmod = w(instr.chmod);
        checked(() => validateChmod(chmod));
        out.chmod = chmod;
      }
      if (instr.checksum !== undefined) {
        const c = w(instr.checksum);
        if (!CHECKSUM.test(c)) fail(`invalid checksum "${c}": expected sha256:<64 hex>, sha384:<96 hex> or sha512:<128 hex>`);
        out.checksum = c;
      }
      return out;
    }
    case 'ENV':
    case 'LABEL':
      return { ...instr, pairs: instr.pairs.map((p) => ({ key: w(p.key), value: w(p.value) })) };
    case 'ARG':
      return {
        ...instr,
        args: instr.args.map((a) => (a.default === undefined ? { key: w(a.key) } : { key: w(a.key), default: w(a.default) })),
      };
    case 'EXPOSE':
      return { ...instr, ports: instr.ports.flatMap(words).map((p) => checked(() => normalizePort(p))) };
    case 'WORKDIR':
      return { ...instr, path: w(instr.path) };
    case 'USER':
      return { ...instr, user: w(instr.user) };
    case 'VOLUME':
      return { ...instr, paths: instr.paths.map(w) };
    case 'STOPSIGNAL':
      return { ...instr, signal: w(instr.signal) };
    case 'RUN':
      return { ...instr, mounts: instr.mounts.map((m) => checked(() => parseMount(m.spec, w))) };
    case 'CMD':
    case 'ENTRYPOINT':
      return { ...instr, cmd: { form: instr.cmd.form, args: [...instr.cmd.args] } };
    case 'SHELL':
      return { ...instr, shell: [...instr.shell] };
    case 'HEALTHCHECK':
      return { ...instr, test: instr.test === 'NONE' ? 'NONE' : [...instr.test] };
    case 'ONBUILD':
    case 'MAINTAINER':
      return { ...instr };
  }
}
