import { describe, expect, it } from 'vitest';
import { parseDuration, parseIsoTime } from '../../src/cli/commands/clock.js';

describe('kms clock arguments', () => {
  it.each([
    ['30d', 30 * 86_400_000],
    ['12h', 12 * 3_600_000],
    ['90m', 90 * 60_000],
    ['45s', 45_000],
    ['45', 45_000],
  ])('advance %s = %i ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['0', '0d', '-1d', '1.5d', '3x', 'd', '', '1d2h', '1e3'])('refuses the duration "%s"', (text) => {
    expect(() => parseDuration(text)).toThrow(/not a duration/);
  });

  it('refuses more than 100 years', () => {
    expect(() => parseDuration('36600d')).toThrow(/at most 100 years/);
    expect(() => parseDuration('999999999999d')).toThrow(/at most 100 years/);
  });

  it('reads ISO-8601 times and refuses anything else', () => {
    expect(parseIsoTime('2027-01-01T00:00:00Z').toISOString()).toBe('2027-01-01T00:00:00.000Z');
    expect(parseIsoTime('2027-01-01').toISOString()).toBe('2027-01-01T00:00:00.000Z');
    for (const text of ['tomorrow', '1735689600', '2027-13-01T00:00:00Z', '']) expect(() => parseIsoTime(text)).toThrow(/not an ISO-8601 time/);
  });
});
