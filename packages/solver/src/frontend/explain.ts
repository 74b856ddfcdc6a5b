import type { CacheRecord, FileDigest, KeyComponents } from '../cache/cache-db.js';

/**
 * Says in one line why a step missed the cache: compares its key components with
 * the nearest earlier record for the same step and names the first that differs
 * (parent step, instruction, ARG value, file).
 */
export function explainMiss(
  now: KeyComponents,
  nowFiles: readonly FileDigest[],
  prev: CacheRecord | undefined,
  prevFiles: readonly FileDigest[],
  missedThisBuild: ReadonlySet<string>,
): string {
  if (!prev) return 'no earlier build of this step in the cache';
  const before = prev.components;
  if (before.parent !== now.parent) {
    if (missedThisBuild.has(now.parent)) return 'parent step missed the cache';
    return 'base changed: the previous step or base image is different';
  }
  if (before.op !== now.op) return describeOpChange(before.op, now.op);
  const argChange = describeArgs(before.args ?? {}, now.args ?? {});
  if (argChange) return argChange;
  if (before.files !== now.files) return describeFiles(prevFiles, nowFiles);
  const inBefore = before.inputs ?? {};
  const inNow = now.inputs ?? {};
  for (const k of new Set([...Object.keys(inBefore), ...Object.keys(inNow)])) {
    if (inBefore[k] !== inNow[k]) return k === 'from' ? 'the stage or image copied from changed' : `the input of ${k} changed`;
  }
  return 'cache record not found';
}

function describeOpChange(before: string, now: string): string {
  let a: Record<string, unknown>;
  let b: Record<string, unknown>;
  try {
    a = JSON.parse(before) as Record<string, unknown>;
    b = JSON.parse(now) as Record<string, unknown>;
  } catch {
    return 'instruction changed';
  }
  const order = ['kind', 'argv', 'sources', 'dest', 'path', 'env', 'user', 'cwd', 'network', 'chown', 'chmod', 'mounts'];
  for (const f of [...order, ...Object.keys(b)]) {
    const x = JSON.stringify(a[f]);
    const y = JSON.stringify(b[f]);
    if (x === y) continue;
    if (f === 'env') {
      const ea = new Map(((a.env as string[] | undefined) ?? []).map((kv) => [kv.split('=')[0], kv]));
      const eb = new Map(((b.env as string[] | undefined) ?? []).map((kv) => [kv.split('=')[0], kv]));
      for (const [k, v] of eb) if (ea.get(k) !== v) return `env ${k} changed: ${short(ea.get(k) ?? '(unset)')} → ${short(v)}`;
      for (const k of ea.keys()) if (!eb.has(k)) return `env ${k} removed`;
    }
    if (f === 'argv' || f === 'sources' || f === 'dest' || f === 'path' || f === 'kind') return `instruction changed: ${short(x ?? '')} → ${short(y ?? '')}`;
    return `${f} changed: ${short(x ?? '(none)')} → ${short(y ?? '(none)')}`;
  }
  return 'instruction changed';
}

function describeArgs(a: Record<string, string>, b: Record<string, string>): string | undefined {
  for (const k of Object.keys(b).sort()) if (a[k] !== b[k]) return `ARG ${k} ${a[k] === undefined ? '(unset)' : short(a[k])}→${short(b[k])}`;
  for (const k of Object.keys(a).sort()) if (!(k in b)) return `ARG ${k} removed`;
  return undefined;
}

function describeFiles(before: readonly FileDigest[], now: readonly FileDigest[]): string {
  const a = new Map(before.map((f) => [f.path, f.digest]));
  const b = new Map(now.map((f) => [f.path, f.digest]));
  const changed: string[] = [];
  const added: string[] = [];
  const removed: string[] = [];
  for (const [p, d] of b) {
    const old = a.get(p);
    if (old === undefined) added.push(p);
    else if (old !== d) changed.push(p);
  }
  for (const p of a.keys()) if (!b.has(p)) removed.push(p);
  const parts: string[] = [];
  const list = (verb: string, xs: string[]): void => {
    if (xs.length === 0) return;
    parts.push(`file ${xs.slice(0, 3).join(', ')}${xs.length > 3 ? ` and ${xs.length - 3} more` : ''} ${verb}`);
  };
  list('changed', changed);
  list('added', added);
  list('removed', removed);
  return parts.length > 0 ? parts.join('; ') : 'source files changed (type or mode)';
}

function short(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
