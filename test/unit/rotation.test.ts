import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  formatRotationInterval,
  MAX_ROTATION_INTERVAL_SECONDS,
  MIN_ROTATION_INTERVAL_SECONDS,
  nextRotationDate,
  parseRotationInterval,
} from '../../src/domain/rotation.js';

describe('parseRotationInterval', () => {
  const valid: Array<[string, number]> = [
    ['7d', 604_800],
    ['604800s', 604_800],
    ['168h', 604_800],
    ['10080m', 604_800],
    ['007d', 604_800],
    ['30d', 2_592_000],
    ['365d', 31_536_000],
    ['8760h', 31_536_000],
    ['31536000s', 31_536_000],
  ];
  it.each(valid)('%s → %i s', (s, seconds) => {
    expect(parseRotationInterval(s)).toBe(seconds);
  });

  const outOfRange = ['6d', '604799s', '366d', '31536001s', '0d', '99999999999999d'];
  it.each(outOfRange)('%s is out of range', (s) => {
    expect(() => parseRotationInterval(s)).toThrow(
      expect.objectContaining({ code: 'InvalidParameter', message: expect.stringContaining('must be between 7 and 365 days') }),
    );
  });

  const malformed = ['', '7', 'd', '7D', ' 7d', '7d ', '7.5d', '-7d', '+7d', '7w', '1e6s', '7dd', '9999999999999999d'];
  it.each(malformed)('%j is malformed', (s) => {
    expect(() => parseRotationInterval(s)).toThrow(
      expect.objectContaining({ code: 'InvalidParameter', message: expect.stringContaining('"RotationInterval"') }),
    );
  });

  it('parses what it formats', () => {
    fc.assert(
      fc.property(fc.integer({ min: MIN_ROTATION_INTERVAL_SECONDS, max: MAX_ROTATION_INTERVAL_SECONDS }), (s) => {
        expect(parseRotationInterval(formatRotationInterval(s))).toBe(s);
      }),
    );
  });
});

describe('formatRotationInterval / nextRotationDate', () => {
  it('formats in seconds as DescribeKey does', () => {
    expect(formatRotationInterval(604_800)).toBe('604800s');
    expect(formatRotationInterval(31_536_000)).toBe('31536000s');
  });

  const cases: Array<[string, number, string]> = [
    ['2024-05-20T06:34:21Z', 604_800, '2024-05-27T06:34:21.000Z'],
    ['2024-02-28T00:00:00Z', 86_400 * 7, '2024-03-06T00:00:00.000Z'],
    ['2023-12-31T23:59:59.500Z', 31_536_000, '2024-12-30T23:59:59.500Z'],
  ];
  it.each(cases)('seed 002: %s + %i s = %s', (last, interval, next) => {
    expect(nextRotationDate(new Date(last), interval).toISOString()).toBe(next);
  });
});
