import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PUNCTUATION, type PasswordPolicy, drawPassword, passwordClasses, sampleIndex } from '../../src/domain/random-password.js';

const policy = (over: Partial<PasswordPolicy> = {}): PasswordPolicy => ({
  length: 32,
  excludeCharacters: '',
  excludeLowercase: false,
  excludeUppercase: false,
  excludeNumbers: false,
  excludePunctuation: false,
  requireEachIncludedType: true,
  ...over,
});

/** A random source that hands out the given bytes in order, then repeats them. */
const scripted = (bytes: number[]) => {
  let at = 0;
  return async (n: number) => Buffer.from(Array.from({ length: n }, () => bytes[at++ % bytes.length]!));
};

describe('passwordClasses', () => {
  it('four classes, 94 printable characters; punctuation is every printable ASCII that is not alphanumeric', () => {
    expect(passwordClasses(policy()).join('')).toHaveLength(94);
    const printable = Array.from({ length: 94 }, (_, i) => String.fromCharCode(0x21 + i)).filter((c) => !/[A-Za-z0-9]/.test(c));
    expect([...PUNCTUATION].sort()).toEqual(printable.sort());
  });

  it('exclusions that leave nothing are InvalidParameter', () => {
    expect(() => passwordClasses(policy({ excludeLowercase: true, excludeUppercase: true, excludeNumbers: true, excludePunctuation: true }))).toThrow(
      /ExcludeCharacters/,
    );
    expect(() => passwordClasses(policy({ excludeLowercase: true, excludeUppercase: true, excludePunctuation: true, excludeCharacters: '0123456789' }))).toThrow(
      /ExcludeCharacters/,
    );
  });
});

describe('drawPassword', () => {
  it('rejection sampling: a byte at or above the largest multiple of the alphabet size is skipped (no modulo bias)', async () => {
    // Digits only: 10 characters, so bytes 250..255 are rejected and 0..249 map to byte % 10.
    const digits = policy({ excludeLowercase: true, excludeUppercase: true, excludePunctuation: true, length: 8 });
    const pw = await drawPassword(digits, scripted([250, 255, 3, 251, 14, 25, 36, 47, 58, 69, 249]));
    expect(pw).toBe('34567899');
  });

  it('each character is uniform: over the 256 byte values every index of any alphabet size is hit equally often', () => {
    for (let size = 1; size <= 94; size++) {
      const counts = Array<number>(size).fill(0);
      for (let byte = 0; byte < 256; byte++) {
        const index = sampleIndex(byte, size);
        if (index !== undefined) counts[index]! += 1;
      }
      expect(new Set(counts)).toEqual(new Set([Math.floor(256 / size)]));
    }
  });

  it('a password missing an included type is drawn again', async () => {
    // First 8 draws give only "a" (byte 0 over 94 characters), then a mixed password.
    const twoClasses = policy({ excludeNumbers: true, excludePunctuation: true, length: 8 });
    const bytes = [...Array(8).fill(0), 0, 26, 1, 27, 2, 28, 3, 29];
    expect(await drawPassword(twoClasses, scripted(bytes))).toBe('aAbBcCdD');
  });

  it('property: length, alphabet and required classes hold for any policy and any random bytes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          length: fc.integer({ min: 8, max: 128 }),
          excludeCharacters: fc.string({ maxLength: 40 }),
          excludeLowercase: fc.boolean(),
          excludeUppercase: fc.boolean(),
          excludeNumbers: fc.boolean(),
          excludePunctuation: fc.boolean(),
          requireEachIncludedType: fc.boolean(),
        }),
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        async (p, seed) => {
          fc.pre(!(p.excludeLowercase && p.excludeUppercase && p.excludeNumbers && p.excludePunctuation));
          let classes: string[];
          try {
            classes = passwordClasses(p);
          } catch {
            return;
          }
          // A varied source: seed bytes mixed with a counter so it never gets stuck.
          let n = 0;
          const source = async (len: number) => Buffer.from(Array.from({ length: len }, () => (seed[n % seed.length]! + 37 * n++) & 0xff));
          const pw = await drawPassword(p, source);
          expect(pw).toHaveLength(p.length);
          const alphabet = classes.join('');
          for (const c of pw) expect(alphabet.includes(c) && !p.excludeCharacters.includes(c)).toBe(true);
          if (p.requireEachIncludedType) for (const chars of classes) expect([...pw].some((c) => chars.includes(c))).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});
