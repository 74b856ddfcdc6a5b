import type { AstNode, DockerfileAst } from './types.js';
import { goQuote } from './go-quote.js';
import { trimGoSpace } from '../shell/unicode.js';

function dumpNode(node: Pick<AstNode, 'value' | 'flags' | 'children' | 'next'>): string {
  let s = node.value.toLowerCase();
  if (node.flags.length > 0) s += ' [' + node.flags.map(goQuote).join(' ') + ']';
  for (const c of node.children) s += '(' + dumpNode(c) + ')\n';
  for (let n = node.next; n; n = n.next) {
    s += ' ' + (n.children.length > 0 ? dumpNode(n) : goQuote(n.value));
  }
  return trimGoSpace(s);
}

/** BuildKit's AST dump (`Node.Dump()`), without the trailing newline. */
export function dumpAst(ast: DockerfileAst | AstNode): string {
  return dumpNode({ value: ast.value, flags: 'flags' in ast ? ast.flags : [], children: ast.children, next: 'next' in ast ? ast.next : undefined });
}
