import type { AstNode, DockerfileAst } from './types.js';

interface JsonInstruction {
  instruction: string;
  flags: string[];
  args: (string | JsonInstruction)[];
  json: boolean;
  heredocs: { name: string; content: string; expand: boolean; chomp: boolean; fileDescriptor: number }[];
  original: string;
  range: { start: { line: number; col: number }; end: { line: number; col: number } };
  startLine: number;
  endLine: number;
}

function instr(n: AstNode): JsonInstruction {
  const args: (string | JsonInstruction)[] = [];
  for (let a = n.next; a; a = a.next) args.push(a.children.length > 0 ? instr(a.children[0]) : a.value);
  return {
    instruction: n.value.toUpperCase(),
    flags: [...n.flags],
    args,
    json: n.attributes.json === true,
    heredocs: n.heredocs.map((h) => ({ name: h.name, content: h.content, expand: h.expand, chomp: h.chomp, fileDescriptor: h.fileDescriptor })),
    original: n.original,
    range: n.range,
    startLine: n.startLine,
    endLine: n.endLine,
  };
}

/** A stable, plain-JSON view of the AST (instruction names upper-cased, flags, args, heredocs, ranges, directives). */
export function astToJson(ast: DockerfileAst): unknown {
  return {
    file: ast.file,
    directives: { escape: ast.directives.escape, syntax: ast.directives.syntax ?? null, check: ast.directives.check ?? null },
    startLine: ast.startLine,
    endLine: ast.endLine,
    instructions: ast.children.map(instr),
  };
}
