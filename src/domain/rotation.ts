import { invalidParameter } from './errors.js';

const DAY = 86_400;
const UNIT_SECONDS = { d: DAY, h: 3_600, m: 60, s: 1 } as const;

/** Bounds of a custom rotation period (alibaba-api.md §5.4; seed 002: 7 to 365 days). */
export const MIN_ROTATION_INTERVAL_SECONDS = 7 * DAY;
export const MAX_ROTATION_INTERVAL_SECONDS = 365 * DAY;

const INTERVAL = /^(\d{1,15})([dhms])$/;

/**
 * Parses `RotationInterval` (`integer[d|h|m|s]`: `7d` ≡ `168h` ≡ `604800s`) into seconds.
 * @throws InvalidParameter(RotationInterval) for another syntax, or for a period outside
 *   7–365 days inclusive.
 */
export function parseRotationInterval(s: string): number {
  const m = INTERVAL.exec(s);
  const [, digits, unit] = m ?? [];
  if (!digits || !unit) {
    throw invalidParameter('RotationInterval', 'It must be an integer followed by d, h, m or s, e.g. 7d.');
  }
  const seconds = Number(digits) * UNIT_SECONDS[unit as keyof typeof UNIT_SECONDS];
  if (seconds < MIN_ROTATION_INTERVAL_SECONDS || seconds > MAX_ROTATION_INTERVAL_SECONDS) {
    throw invalidParameter('RotationInterval', 'It must be between 7 and 365 days.');
  }
  return seconds;
}

/** Formats a period the way DescribeKey returns it: always in seconds, `"604800s"`. */
export const formatRotationInterval = (seconds: number): string => `${seconds}s`;

/**
 * Seed 002: next rotation time = last rotation time + rotation period. A manual rotation
 * (CreateKeyVersion) in between moves `lastRotation`, and so the next date.
 */
export const nextRotationDate = (lastRotation: Date, intervalSeconds: number): Date =>
  new Date(lastRotation.getTime() + intervalSeconds * 1000);
