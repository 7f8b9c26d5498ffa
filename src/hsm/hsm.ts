/**
 * The HSM port. Services talk to this interface only; the one real adapter speaks PKCS#11
 * (hsm/pkcs11/pkcs11-hsm.ts). Every method is async so the event loop never blocks on the
 * token. Key material never crosses this boundary, with two documented exceptions:
 * `unsealWithRootKey` (the SOFTWARE tier decrypts its version keys into process memory by
 * design) and an import into a SOFTWARE-tier key, which returns the material so it can be
 * sealed under the root key.
 */

/** BYOK wrapping algorithms (seed 000, step 2). */
export type WrappingAlgorithm = 'RSAES_OAEP_SHA_1' | 'RSAES_OAEP_SHA_256' | 'RSAES_PKCS1_V1_5';
export const WRAPPING_ALGORITHMS: readonly WrappingAlgorithm[] = [
  'RSAES_OAEP_SHA_1',
  'RSAES_OAEP_SHA_256',
  'RSAES_PKCS1_V1_5',
];

/** What the token really does, learned by trying each operation at start (not from the mechanism list). */
export interface HsmCapabilities {
  aesGcm: boolean;
  oaepSha1Unwrap: boolean;
  oaepSha256Unwrap: boolean;
  pkcs1v15Unwrap: boolean;
  rsaX509: boolean;
  aesKeyWrapPad: boolean;
  aesCmac: boolean;
}

export interface HsmInfo {
  modulePath: string;
  manufacturer: string;
  library: string;
  tokenLabel: string;
  tokenModel: string;
  capabilities: HsmCapabilities;
}

export interface AesGcmSealed {
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

/** How an imported material was unwrapped; recorded in the audit trail. */
export type UnwrapPath = 'native' | 'host-oaep-decode';

export interface ImportUnwrapRequest {
  wrappingKeyId: string;
  algorithm: WrappingAlgorithm;
  encryptedMaterial: Buffer;
  /** Expected material length in bytes (32, 24 or 16). */
  materialLength: number;
  /**
   * `token`: a persistent, sensitive, non-extractable AES object with CKA_ID = versionId
   * (HSM tier). `host`: a transient object whose material is returned for sealing under the
   * root key (SOFTWARE tier). `fingerprint-only`: a transient sensitive object, destroyed
   * once fingerprinted (re-import of material the token already holds).
   */
  target: { kind: 'token'; versionId: string } | { kind: 'host' } | { kind: 'fingerprint-only' };
}

export interface ImportUnwrapResult {
  path: UnwrapPath;
  /** AES-CMAC (or AES-ECB) of a fixed block under the candidate key, computed inside the token. */
  fingerprint: Buffer;
  /** Only for `target.kind === 'host'`; the caller must zero it after use. */
  material?: Buffer;
}

/** What the token holds, by CKA_ID (see `Hsm.listObjectIds`). */
export interface HsmObjectIds {
  secretKeys: string[];
  wrappingPairs: string[];
}

export interface Hsm {
  info(): HsmInfo;

  /** Generates a token AES key (sensitive, non-extractable) whose CKA_ID is the version id. */
  generateVersionKey(versionId: string, bits: 128 | 192 | 256): Promise<void>;
  hasVersionKey(versionId: string): Promise<boolean>;
  /** Destroys the version's token object; true when one existed. */
  destroyVersionKey(versionId: string): Promise<boolean>;
  /** AES-GCM inside the token with a fresh 12-byte IV. */
  encryptWithVersionKey(versionId: string, plaintext: Buffer, aad: Buffer | undefined): Promise<AesGcmSealed>;
  /** Throws KmsError InvalidCiphertext when the tag does not verify. */
  decryptWithVersionKey(versionId: string, sealed: AesGcmSealed, aad: Buffer | undefined): Promise<Buffer>;

  /** AES-GCM under the token's root key; returns iv ‖ ciphertext ‖ tag. */
  sealWithRootKey(plaintext: Buffer, aad?: Buffer): Promise<Buffer>;
  unsealWithRootKey(blob: Buffer, aad?: Buffer): Promise<Buffer>;
  /** HMAC-SHA256 under a token secret that never leaves the HSM (import tokens). */
  macWithTokenKey(data: Buffer): Promise<Buffer>;
  randomBytes(length: number): Promise<Buffer>;

  /** Generates an RSA-2048 pair in the token; returns the public half as DER SubjectPublicKeyInfo. */
  generateWrappingKeyPair(wrappingKeyId: string): Promise<{ publicKeyDer: Buffer }>;
  destroyWrappingKeyPair(wrappingKeyId: string): Promise<void>;
  /** Whether this token can unwrap with `algorithm` (natively or through the allowed fallback). */
  supportsWrappingAlgorithm(algorithm: WrappingAlgorithm): boolean;
  /** Unwraps BYOK material inside the token. Every failure is the same InvalidKeyMaterial error. */
  unwrapImportedMaterial(request: ImportUnwrapRequest): Promise<ImportUnwrapResult>;
  /** Fingerprint of an existing version key, computed inside the token. */
  fingerprintVersionKey(versionId: string): Promise<Buffer>;

  /**
   * The CKA_IDs of the service's objects in the token, for the reconciler: persistent secret
   * keys (version keys) and private keys (the halves of wrapping pairs) whose id is a UUID.
   * The service's own keys (root key, import-token MAC key) and objects of other applications
   * (ids that are not UUIDs) are never listed.
   */
  listObjectIds(): Promise<HsmObjectIds>;

  close(): Promise<void>;
}
