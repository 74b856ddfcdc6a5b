/**
 * File names that are not valid UTF-8. Paths are strings throughout tsbuild, and Node
 * decodes such bytes to U+FFFD, which would silently rename (or lose) the file; the
 * walks and the tar reader check for it and fail with {@link UnsupportedFileNameError}.
 * The check costs one `includes('\uFFFD')` per name; only a name holding U+FFFD is
 * decoded again, strictly (a real U+FFFD in a name is valid UTF-8 and passes).
 */
import { UnsupportedFileNameError } from '../errors.js';

const strict = new TextDecoder('utf-8', { fatal: true });

/** `bytes` with printable ASCII kept and every other byte as `\xNN`, quoted. */
export function escapeName(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b >= 0x20 && b < 0x7f && b !== 0x5c && b !== 0x22 ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return `"${s}"`;
}

/**
 * The UTF-8 string of a name's bytes; throws when they are not UTF-8 (`where` says what
 * was read; `symlink`, when the bytes are that symlink's target).
 */
export function utf8Name(bytes: Uint8Array, where: string, symlink?: string): string {
  const s = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  if (s.includes('\uFFFD')) {
    try {
      strict.decode(bytes);
    } catch {
      throw new UnsupportedFileNameError(escapeName(bytes), where, symlink);
    }
  }
  return s;
}
