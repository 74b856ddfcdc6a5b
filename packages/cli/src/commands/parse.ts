import { readFile } from 'node:fs/promises';

interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

async function readSource(file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
  return readFile(file, 'utf8');
}

/** `tsbuild parse`: BuildKit's AST dump, or stable JSON. A parse error exits 1 with file:line:col. */
export async function parseCommand(file: string, opts: { format: 'dump' | 'json' }, io: Io): Promise<void> {
  const { parseDockerfile, dumpAst, astToJson, toStages } = await import('@tsbuild/parser');
  const text = await readSource(file);
  const name = file === '-' ? '<stdin>' : file;
  const { ast } = parseDockerfile(text, { file: name });
  // the typed pass rejects unknown instructions and bad flags with their line and column
  toStages(ast, { file: name });
  io.stdout(opts.format === 'json' ? `${JSON.stringify(astToJson(ast), null, 2)}\n` : `${dumpAst(ast)}\n`);
}

/** Prints lint warnings; exit code 1 when a check configured as an error fired. */
export async function lintFile(file: string, text: string | undefined, buildArgs: Record<string, string>, format: 'text' | 'json', io: Io): Promise<number> {
  const { lint } = await import('@tsbuild/parser');
  const src = text ?? (await readSource(file));
  const name = text !== undefined && file === '-' ? '<stdin>' : file;
  const warnings = lint(src, { file: name, buildArgs });
  if (format === 'json') {
    io.stdout(`${JSON.stringify(warnings, null, 2)}\n`);
  } else {
    for (const w of warnings) io.stdout(`${name}:${w.range.start.line}:${w.range.start.col}: ${w.rule}: ${w.message}\n`);
    io.stdout(warnings.length === 0 ? 'Check complete, no warnings found.\n' : `Check complete, ${warnings.length} warning${warnings.length === 1 ? '' : 's'} found.\n`);
  }
  return warnings.some((w) => (w as { error?: boolean }).error === true) ? 1 : 0;
}

export async function checkCommand(file: string, opts: { buildArg: string[]; format: 'text' | 'json' }, io: Io): Promise<number> {
  const { parseKeyValues } = await import('./build.js');
  return lintFile(file, file === '-' ? await readSource('-') : undefined, parseKeyValues(opts.buildArg, '--build-arg', true), opts.format, io);
}
