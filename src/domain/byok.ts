/**
 * BYOK rules (seed 000): which wrapping key specs and algorithms each key management type
 * offers, which keys take imported material, when imported material expires, and the
 * permanent binding of a key to its first material. Pure: no I/O.
 */
import { timingSafeEqual } from 'node:crypto';
import { KmsError, invalidKeyMaterial, invalidParameter } from './errors.js';
import type { WrappingAlgorithm } from './import-token.js';
import { type KeyAction, type KeyState, type Origin, type ProtectionLevel, assertAllowed } from './key.js';

export type { WrappingAlgorithm };

/** Seed 000, step 2: the only wrapping public key type for symmetric material. */
export type WrappingKeySpec = 'RSA_2048';
export const WRAPPING_KEY_SPECS = ['RSA_2048'] as const satisfies readonly [WrappingKeySpec, ...WrappingKeySpec[]];

/** Seed 000, step 2: every wrapping algorithm of any key management type. */
export const WRAPPING_ALGORITHMS = ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256', 'RSAES_PKCS1_V1_5'] as const satisfies readonly [
  WrappingAlgorithm,
  ...WrappingAlgorithm[],
];

/**
 * The seed's three key management types: a default key (no instance), a software-protected
 * key (software key management instance) and a hardware-protected key (hardware instance).
 */
export type KeyManagementType = 'default' | 'software' | 'hardware';

/** What decides a key's management type. */
export interface KeyTierView {
  instanceId: string | null;
  protectionLevel: ProtectionLevel;
}

export function keyManagementType(key: KeyTierView): KeyManagementType {
  if (key.instanceId === null) return 'default';
  return key.protectionLevel === 'HSM' ? 'hardware' : 'software';
}

/**
 * Seed 000, step 2, the table of wrapping algorithms per key management type, in the
 * seed's order. RSAES_OAEP_SHA_1 is offered for default keys only; RSAES_PKCS1_V1_5 is
 * deprecated (NIST: not for key transport after 2023-12-31) but still offered everywhere.
 */
const ALGORITHMS_BY_TYPE: Readonly<Record<KeyManagementType, readonly WrappingAlgorithm[]>> = {
  default: ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256', 'RSAES_PKCS1_V1_5'],
  software: ['RSAES_OAEP_SHA_256', 'RSAES_PKCS1_V1_5'],
  hardware: ['RSAES_OAEP_SHA_256', 'RSAES_PKCS1_V1_5'],
};

export const allowedWrappingAlgorithms = (type: KeyManagementType): readonly WrappingAlgorithm[] => ALGORITHMS_BY_TYPE[type];

const TYPE_NAMES: Readonly<Record<KeyManagementType, string>> = {
  default: 'default keys',
  software: 'keys of a software key management instance',
  hardware: 'keys of a hardware key management instance',
};

/**
 * @throws InvalidParameter(WrappingAlgorithm) when the seed's table does not offer
 *   `algorithm` for this key management type; the message lists what it does offer.
 */
export function assertWrappingAlgorithmAllowed(type: KeyManagementType, algorithm: WrappingAlgorithm): void {
  const allowed = ALGORITHMS_BY_TYPE[type];
  if (!allowed.includes(algorithm)) {
    throw invalidParameter('WrappingAlgorithm', `${algorithm} is not available for ${TYPE_NAMES[type]}; use ${allowed.join(' or ')}.`);
  }
}

/** `Unsupported.Origin` (400): the key's material is not imported (alibaba-api.md §5.3). */
export const unsupportedOrigin = () => new KmsError('Unsupported.Origin', 'This key origin is not valid for this api.');

/** What the import actions need to know about a key. */
export interface ImportTargetView {
  origin: Origin;
  state: KeyState;
}

/**
 * Whether an import action may touch this key: only `Origin=EXTERNAL` keys have imported
 * material (§5.3), and the state matrix of domain/key.ts decides the rest (PendingDeletion
 * is refused with `Rejected.PendingDeletion`).
 * @throws Unsupported.Origin, Rejected.<State>
 */
export function assertImportAction(action: Extract<KeyAction, 'GetParametersForImport' | 'ImportKeyMaterial' | 'DeleteKeyMaterial'>, key: ImportTargetView): void {
  if (key.origin !== 'EXTERNAL') throw unsupportedOrigin();
  assertAllowed(action, key.state);
}

/**
 * `KeyMaterialExpireUnix` (Unix seconds): 0 or absent means the material never expires; a
 * time not after `now` is refused (alibaba-api.md §5.3: "must not be before server now";
 * material that expires at once would be deleted as soon as it is imported).
 * @throws InvalidParameter(KeyMaterialExpireUnix)
 */
export function materialExpiry(expireUnix: number | undefined, now: Date): Date | null {
  if (expireUnix === undefined || expireUnix === 0) return null;
  if (!Number.isSafeInteger(expireUnix) || expireUnix < 0) {
    throw invalidParameter('KeyMaterialExpireUnix', 'It must be Unix seconds, or 0 for never.');
  }
  const at = new Date(expireUnix * 1000);
  if (at.getTime() <= now.getTime()) {
    throw invalidParameter('KeyMaterialExpireUnix', 'It must be in the future (Unix seconds), or 0 for never.');
  }
  return at;
}

/** Whether material whose expiry is `expireAt` has expired at `now` (expired from `expireAt` on). */
export const materialExpired = (expireAt: Date | null, now: Date): boolean => expireAt !== null && expireAt.getTime() <= now.getTime();

/**
 * Seed 000: "a key is bound forever to its first material; the same material can be
 * imported again, different material cannot". `bound` is the fingerprint recorded at the
 * first import (null before it). The comparison is constant-time, and a mismatch is the
 * same InvalidKeyMaterial error as any unwrap failure: a distinct answer would tell an
 * attacker that the padding of a forged ciphertext was valid (a Bleichenbacher/Manger
 * oracle on the wrapping key).
 * @throws InvalidKeyMaterial
 */
export function assertBoundMaterial(bound: Buffer | null, candidate: Buffer): void {
  if (bound === null) return;
  if (bound.length !== candidate.length || !timingSafeEqual(bound, candidate)) throw invalidKeyMaterial();
}

/**
 * `EncryptedKeyMaterial`: base64 of the RSA ciphertext (seed 000, step 3 writes it with
 * `openssl enc -e -base64 -A`). Whitespace is ignored, as a console upload of the text file
 * would be. Anything else that is not base64 is the same InvalidKeyMaterial as an unwrap
 * failure: one error for every bad ciphertext.
 * @throws InvalidKeyMaterial
 */
export function decodeEncryptedKeyMaterial(text: string): Buffer {
  const compact = text.replace(/\s+/g, '');
  if (compact.length === 0 || compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) throw invalidKeyMaterial();
  return Buffer.from(compact, 'base64');
}
