/**
 * What a KeySpec *is* cryptographically (alibaba-api.md §5.2): the shape the HSM port
 * generates, addresses and uses a version's key by. One table, so the port grows by spec
 * rather than by special cases, and services never parse spec names.
 */

/** Named curves by their Alibaba spec; OIDs are what PKCS#11 takes as CKA_EC_PARAMS. */
export type EcCurve = 'P-256' | 'secp256k1' | 'SM2';

/**
 * - `aes`: a symmetric AES key (AES-GCM).
 * - `rsa`: an RSA key pair, public exponent 65537.
 * - `ec`: an EC key pair on a named curve.
 * - `hmac`: a generic secret as long as its hash's output, for HMAC with that hash only
 *   (domain/mac.ts: a MAC key's spec fixes its algorithm).
 */
export type KeyShape =
  | { kind: 'aes'; bits: 128 | 192 | 256 }
  | { kind: 'rsa'; bits: 2048 | 3072 }
  | { kind: 'ec'; curve: EcCurve }
  | { kind: 'hmac'; hash: MacHash };

/** The hashes HMAC keys are made for (HMAC_SM3 is refused: no token or node:crypto SM3 here). */
export type MacHash = 'sha224' | 'sha256' | 'sha384' | 'sha512';

export const SYMMETRIC_SPECS = ['Aliyun_AES_256', 'Aliyun_AES_192', 'Aliyun_AES_128'] as const;
export const ASYMMETRIC_SPECS = ['RSA_2048', 'RSA_3072', 'EC_P256', 'EC_P256K', 'EC_SM2'] as const;
/**
 * HMAC key specs (issue 15). Alibaba documents the GenerateMac algorithms (§5.2) but not the
 * KeySpec names of HMAC keys; ours name the hash like the algorithms do, without its
 * underscore (`HMAC_SHA256` keys compute `HMAC_SHA_256`), as AWS names its HMAC_256.
 */
export const MAC_SPECS = ['HMAC_SHA224', 'HMAC_SHA256', 'HMAC_SHA384', 'HMAC_SHA512'] as const;

export type SymmetricKeySpec = (typeof SYMMETRIC_SPECS)[number];
export type AsymmetricKeySpec = (typeof ASYMMETRIC_SPECS)[number];
export type MacKeySpec = (typeof MAC_SPECS)[number];

const SHAPES: Readonly<Record<SymmetricKeySpec | AsymmetricKeySpec | MacKeySpec, KeyShape>> = {
  Aliyun_AES_256: { kind: 'aes', bits: 256 },
  Aliyun_AES_192: { kind: 'aes', bits: 192 },
  Aliyun_AES_128: { kind: 'aes', bits: 128 },
  RSA_2048: { kind: 'rsa', bits: 2048 },
  RSA_3072: { kind: 'rsa', bits: 3072 },
  EC_P256: { kind: 'ec', curve: 'P-256' },
  EC_P256K: { kind: 'ec', curve: 'secp256k1' },
  EC_SM2: { kind: 'ec', curve: 'SM2' },
  HMAC_SHA224: { kind: 'hmac', hash: 'sha224' },
  HMAC_SHA256: { kind: 'hmac', hash: 'sha256' },
  HMAC_SHA384: { kind: 'hmac', hash: 'sha384' },
  HMAC_SHA512: { kind: 'hmac', hash: 'sha512' },
};

export const keyShape = (spec: SymmetricKeySpec | AsymmetricKeySpec | MacKeySpec): KeyShape => SHAPES[spec];

/** Output length of each MAC hash in bytes; an HMAC key's material is exactly this long (RFC 2104 §3: at least L). */
export const MAC_HASH_BYTES: Readonly<Record<MacHash, number>> = { sha224: 28, sha256: 32, sha384: 48, sha512: 64 };

export const isAsymmetricShape = (shape: KeyShape): shape is Extract<KeyShape, { kind: 'rsa' | 'ec' }> =>
  shape.kind === 'rsa' || shape.kind === 'ec';

/** DER-encoded OBJECT IDENTIFIERs of the curves (CKA_EC_PARAMS, namedCurve form). */
export const CURVE_OID_DER: Readonly<Record<EcCurve, Buffer>> = {
  // 1.2.840.10045.3.1.7 (prime256v1)
  'P-256': Buffer.from('06082a8648ce3d030107', 'hex'),
  // 1.3.132.0.10
  secp256k1: Buffer.from('06052b8104000a', 'hex'),
  // 1.2.156.10197.1.301 (GB/T 32918)
  SM2: Buffer.from('06082a811ccf5501822d', 'hex'),
};

/** Bytes of one ECDSA signature component (r or s) on each curve. */
export const CURVE_ORDER_BYTES: Readonly<Record<EcCurve, number>> = { 'P-256': 32, secp256k1: 32, SM2: 32 };
