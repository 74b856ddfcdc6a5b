/** Small helpers about processes and errno errors, shared by the store's modules. */

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
