/** Human-readable size in decimal units, as docker prints them (`999B`, `1.07MB`, `35.8MB`, `512MB`). */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let x = n;
  while (x >= 1000 && i < units.length - 1) {
    x /= 1000;
    i++;
  }
  return i === 0 ? `${x}B` : `${x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0)}${units[i]}`;
}
