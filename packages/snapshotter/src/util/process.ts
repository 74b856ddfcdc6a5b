/** Small helpers about processes and errno errors, shared by the store's modules. */
import { readFileSync } from 'node:fs';

/** Whether `err` is a Node system error with one of these codes (`ENOENT`, `EEXIST`...). */
export function isErrno(err: unknown, ...codes: string[]): boolean {
  return typeof err === 'object' && err !== null && codes.includes((err as NodeJS.ErrnoException).code ?? '');
}

/**
 * Whether `pid` names a live process (EPERM counts as alive: it exists, we may not
 * signal it). Lock files, leases and snapshot owners use it to find what a dead
 * process left behind.
 */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, 'EPERM');
  }
}

let kernelBootId: string | undefined | null = null;

/**
 * The kernel's boot id (`/proc/sys/kernel/random/boot_id`), undefined when it cannot be
 * read. Test-only override: `TSBUILD_TEST_BOOT_ID` (read at every call) stands in for it,
 * so the power-loss test (T33) can simulate a reboot; never set it elsewhere: a store used
 * with two values drops its snapshots and breaks its locks each time the value changes.
 */
export function bootId(): string | undefined {
  const override = process.env.TSBUILD_TEST_BOOT_ID;
  if (override !== undefined && override !== '') return override;
  if (kernelBootId === null) {
    try {
      kernelBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
    } catch {
      kernelBootId = undefined;
    }
  }
  return kernelBootId;
}
