import type { BenchRow } from './report.js';

/** What a row must reach; every load row also needs zero non-2xx answers and zero errors. */
export type Target =
  | { kind: 'ratio'; min: number; of: string; p99MaxMs?: number }
  | { kind: 'rate'; min: number }
  | { kind: 'p50'; maxMs: number }
  | { kind: 'p99'; maxMs: number }
  | { kind: 'none' };

/** The target as the table shows it; a load row's zero non-2xx is implied (said under the table). */
export function describeTarget(t: Target): string {
  switch (t.kind) {
    case 'ratio':
      return `≥ ${Math.round(t.min * 100)} % of ${t.of}${t.p99MaxMs !== undefined ? `, p99 ≤ ${t.p99MaxMs} ms` : ''}`;
    case 'rate':
      return `≥ ${t.min}/s`;
    case 'p50':
      return `p50 ≤ ${t.maxMs} ms`;
    case 'p99':
      return `p99 ≤ ${t.maxMs} ms`;
    case 'none':
      return '0 non-2xx';
  }
}

/** PASS/FAIL of a measured load row against its target (ratio already computed against `t.of`). */
export function meets(t: Target, row: BenchRow): boolean {
  const clean = (row.non2xx ?? 0) === 0 && (row.errors ?? 0) === 0 && (row.requests ?? 0) > 0;
  if (!clean) return false;
  switch (t.kind) {
    case 'ratio':
      return (row.ratio ?? 0) >= t.min && (t.p99MaxMs === undefined || (row.p99Ms ?? Infinity) <= t.p99MaxMs);
    case 'rate':
      return (row.opsPerSecond ?? 0) >= t.min;
    case 'p50':
      return (row.p50Ms ?? Infinity) <= t.maxMs;
    case 'p99':
      return (row.p99Ms ?? Infinity) <= t.maxMs;
    case 'none':
      return true;
  }
}
