/**
 * GetRandomPassword (alibaba-api.md §2, #49; parameter names as `@alicloud/kms20160120` 1.2.0
 * sends them): which characters a password may hold and how they are drawn. Pure: the
 * random bytes come from the caller (the token's RNG, `C_GenerateRandom`).
 */
import { internalFailure, invalidParameter } from './errors.js';

/** Alibaba's punctuation set: every printable ASCII character that is not a letter or digit (no space). */
export const PUNCTUATION = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~';
const LOWERCASE = 'abcdefghijklmnopqrstuvwxyz';
const UPPERCASE = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const NUMBERS = '0123456789';

/** `PasswordLength`: 8–128, default 32 (Alibaba's documented bounds). */
export const MIN_PASSWORD_LENGTH = 8;
export const MAX_PASSWORD_LENGTH = 128;
export const DEFAULT_PASSWORD_LENGTH = 32;

export interface PasswordPolicy {
  length: number;
  /** Characters never to use; ones outside the four classes are ignored. */
  excludeCharacters: string;
  excludeLowercase: boolean;
  excludeUppercase: boolean;
  excludeNumbers: boolean;
  excludePunctuation: boolean;
  /** At least one character of every class left in (Alibaba's default: true). */
  requireEachIncludedType: boolean;
}

/**
 * The character classes left after the exclusions, each non-empty.
 * @throws InvalidParameter when the exclusions leave no character at all.
 */
export function passwordClasses(policy: PasswordPolicy): string[] {
  const excluded = new Set(policy.excludeCharacters);
  const classes: Array<[skip: boolean, chars: string]> = [
    [policy.excludeLowercase, LOWERCASE],
    [policy.excludeUppercase, UPPERCASE],
    [policy.excludeNumbers, NUMBERS],
    [policy.excludePunctuation, PUNCTUATION],
  ];
  const left = classes
    .filter(([skip]) => !skip)
    .map(([, chars]) => [...chars].filter((c) => !excluded.has(c)).join(''))
    .filter((chars) => chars.length > 0);
  if (left.length === 0) throw invalidParameter('ExcludeCharacters', 'The exclusions leave no character to build a password from.');
  return left;
}

/**
 * Rejection sampling of one byte for an alphabet of `size` (1–256) characters: the index, or
 * undefined for a byte at or above the largest multiple of `size` below 256 — taking those
 * modulo `size` would favour the first characters.
 */
export function sampleIndex(byte: number, size: number): number | undefined {
  return byte < 256 - (256 % size) ? byte % size : undefined;
}

/** Bytes of randomness fetched per refill: a password's worth plus room for rejections. */
const batchSize = (length: number) => length * 2 + 16;

/**
 * Draws a password: each character uniform over the allowed alphabet by rejection sampling
 * (a byte ≥ the largest multiple of the alphabet size below 256 is discarded, so there is no
 * modulo bias); with `requireEachIncludedType`, a password missing a class is discarded
 * whole and drawn again, which keeps every acceptable password equally likely.
 * @throws InternalFailure if the random source keeps failing the class rule (it cannot, with
 *   ≤ 4 classes and ≥ 8 characters, except with a broken RNG).
 */
export async function drawPassword(policy: PasswordPolicy, randomBytes: (n: number) => Promise<Buffer>): Promise<string> {
  const classes = passwordClasses(policy);
  const alphabet = classes.join('');
  let pool: Buffer = Buffer.alloc(0);
  let at = 0;
  const nextByte = async (): Promise<number> => {
    if (at >= pool.length) {
      pool = await randomBytes(batchSize(policy.length));
      at = 0;
    }
    return pool[at++]!;
  };
  for (let attempt = 0; attempt < 10_000; attempt++) {
    let password = '';
    while (password.length < policy.length) {
      const index = sampleIndex(await nextByte(), alphabet.length);
      if (index !== undefined) password += alphabet[index];
    }
    if (!policy.requireEachIncludedType || classes.every((chars) => [...password].some((c) => chars.includes(c)))) return password;
  }
  throw internalFailure('The random source did not yield a password with every character type.');
}
