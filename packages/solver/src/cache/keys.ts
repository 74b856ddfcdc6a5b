import { createHash } from 'node:crypto';

/** A cache key or content digest: always `sha256:<64 hex>`. */
export type Key = `sha256:${string}`;

/** Canonical JSON: object keys sorted, no whitespace, `undefined` members dropped. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const parts: string[] = [];
  for (const k of Object.keys(obj).sort()) {
    const v = obj[k];
    if (v === undefined) continue;
    parts.push(`${JSON.stringify(k)}:${canonicalJson(v)}`);
  }
  return `{${parts.join(',')}}`;
}

export function sha256Key(data: string | Uint8Array): Key {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The key of a value: sha256 of its canonical JSON. */
export function keyOf(value: unknown): Key {
  return sha256Key(canonicalJson(value));
}
