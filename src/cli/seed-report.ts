import type { SeedOutcome } from '../domain/seed.js';

/** One line per item (`created  key  key-…  detail`) and a count per status, for people. */
export function formatSeedReport(outcomes: readonly SeedOutcome[]): string {
  const width = Math.max(0, ...outcomes.map((o) => o.name.length));
  const lines = outcomes.map((o) => `${o.status.padEnd(9)} ${o.kind.padEnd(10)} ${o.name.padEnd(width)}${o.detail ? `  ${o.detail}` : ''}`.trimEnd());
  const counts = new Map<string, number>();
  for (const o of outcomes) counts.set(o.status, (counts.get(o.status) ?? 0) + 1);
  const summary = [...counts].map(([status, n]) => `${n} ${status}`).join(', ') || 'nothing declared';
  return `${[...lines, `seed: ${summary}`].join('\n')}\n`;
}
