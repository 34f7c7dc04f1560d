/** Parsers for human-friendly config values: durations ("30s") and sizes ("64KiB"). */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  kib: 1024,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

function parseWithUnits(text: string, units: Record<string, number>, bare: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return undefined;
  const factor = units[(m[2] || bare).toLowerCase()];
  if (factor === undefined) return undefined;
  return Math.round(Number(m[1]) * factor);
}

/** "250ms", "30s", "5m", "1h", "7d", or a bare number of milliseconds. */
export function parseDuration(text: string): number | undefined {
  return parseWithUnits(text, DURATION_UNITS, 'ms');
}

/** "512", "64KiB", "10MB", "1GiB" (case-insensitive); a bare number is bytes. */
export function parseSize(text: string): number | undefined {
  return parseWithUnits(text, SIZE_UNITS, 'b');
}
