/**
 * Usage per key version: how many times a version has encrypted with AES-GCM under a random
 * 96-bit IV. NIST SP 800-38D §8.3 allows at most 2^32 such invocations per key (beyond it the
 * chance of an IV collision, which breaks GCM's confidentiality and integrity, passes 2^-32);
 * the service warns from half of it, the signal to rotate.
 */
export const AES_GCM_RANDOM_IV_LIMIT = 2 ** 32;
export const ENCRYPTION_COUNT_WARNING = 2 ** 31;

export type EncryptionUsageLevel = 'ok' | 'rotate' | 'exhausted';

/** `rotate` from 2^31 encryptions, `exhausted` from 2^32. */
export function encryptionUsageLevel(count: number): EncryptionUsageLevel {
  if (count >= AES_GCM_RANDOM_IV_LIMIT) return 'exhausted';
  if (count >= ENCRYPTION_COUNT_WARNING) return 'rotate';
  return 'ok';
}

/** The warning shown with a version's usage, or undefined while it is far from the bound. */
export function encryptionUsageWarning(count: number): string | undefined {
  switch (encryptionUsageLevel(count)) {
    case 'ok':
      return undefined;
    case 'rotate':
      return 'This version has made more than 2^31 AES-GCM encryptions, half the 2^32 random-IV bound of NIST SP 800-38D: rotate the key.';
    case 'exhausted':
      return 'This version has reached the 2^32 AES-GCM random-IV bound of NIST SP 800-38D: rotate the key now.';
  }
}
