import type { AsymmetricEncryptionAlgorithm, SigningAlgorithm } from '../domain/asymmetric.js';
import type { KeySpec, KeyUsage } from '../domain/key.js';
import { type EcCurve, type MacHash, keyShape } from '../domain/key-spec.js';
import type { MacAlgorithm } from '../domain/mac.js';

/**
 * The HSM port. Services talk to this interface only; the one real adapter speaks PKCS#11
 * (hsm/pkcs11/pkcs11-hsm.ts). Every method is async so the event loop never blocks on the
 * token. Key material never crosses this boundary, with three documented exceptions:
 * `unsealWithRootKey` (the SOFTWARE tier decrypts its version keys into process memory by
 * design), an import into a SOFTWARE-tier key, which returns the material so it can be
 * sealed under the root key, and `signWithKeyMaterial`, which takes a SOFTWARE-tier private
 * key *in* to sign with a transient token object (node:crypto cannot sign a digest).
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
  /** C_Decrypt with CKM_RSA_PKCS_OAEP (AsymmetricDecrypt), per hash. */
  oaepSha1Decrypt: boolean;
  oaepSha256Decrypt: boolean;
  /** CKM_RSA_PKCS_PSS with SHA-256, MGF1-SHA256, salt 32. */
  rsaPss: boolean;
  /** CKM_EC_KEY_PAIR_GEN + CKM_ECDSA on each named curve. */
  ecdsaP256: boolean;
  ecdsaSecp256k1: boolean;
  /**
   * C_GenerateKeyPair on the SM2 curve (GB/T 32918) works. SoftHSM2 over OpenSSL 3 says yes,
   * but that is only the curve: SM2DSA / SM2PKE are not ECDSA and PKCS#11 standardises no
   * mechanism for them, so EC_SM2 keys are still refused (hsm/pkcs11/version-keys.ts).
   */
  ecSm2Curve: boolean;
  /**
   * C_Sign with CKM_SHA{224,256,384,512}_HMAC over a CKK_GENERIC_SECRET key, compared with
   * node:crypto's HMAC: which MAC specs HSM-tier keys may have (flat, as /health shows them).
   */
  hmacSha224: boolean;
  hmacSha256: boolean;
  hmacSha384: boolean;
  hmacSha512: boolean;
}

/**
 * How a version's key is generated and what it may do — one description for every spec, so
 * the port grows by spec rather than by special cases. Key pairs are single-purpose: an RSA
 * ENCRYPT/DECRYPT pair's private half may only decrypt, a SIGN/VERIFY one only sign (the
 * usage table's rule, enforced by the token's own attributes too).
 */
export type VersionKeySpec =
  | { kind: 'aes'; bits: 128 | 192 | 256 }
  | { kind: 'rsa'; bits: 2048 | 3072; use: 'decrypt' | 'sign' }
  | { kind: 'ec'; curve: EcCurve }
  /** A CKK_GENERIC_SECRET as long as the hash's output, used only for HMAC with that hash. */
  | { kind: 'hmac'; hash: MacHash };

/** The port's spec of a key's versions: its KeySpec's shape, and for RSA whether it decrypts or signs. */
export function versionKeySpec(key: { keySpec: KeySpec; keyUsage: KeyUsage }): VersionKeySpec {
  const shape = keyShape(key.keySpec);
  if (shape.kind === 'rsa') return { ...shape, use: key.keyUsage === 'SIGN/VERIFY' ? 'sign' : 'decrypt' };
  return shape;
}

/**
 * An HsmEncryptedDatabase version key (Alibaba's `KeyStorageMechanism`): its AES-KWP blob
 * under the token's master wrapping key, kept in Postgres with the version row. The token
 * holds no object per version; the blob is unwrapped into a session object when used.
 */
export interface WrappedVersionKey {
  versionId: string;
  wrapped: Buffer;
}

/** A wrapped key pair version: the private half is the blob; the public half is kept beside it. */
export interface WrappedVersionKeyPair extends WrappedVersionKey {
  spec: Extract<VersionKeySpec, { kind: 'rsa' | 'ec' }>;
  /** DER SubjectPublicKeyInfo. */
  publicKeyDer: Buffer;
}

/** A new wrapped version key: the blob, and for a key pair its public half (DER SPKI). */
export interface WrappedMaterial {
  wrapped: Buffer;
  publicKeyDer?: Buffer;
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
  target: { kind: 'token'; versionId: string } | { kind: 'wrapped'; versionId: string } | { kind: 'host' } | { kind: 'fingerprint-only' };
}

export interface ImportUnwrapResult {
  path: UnwrapPath;
  /** AES-CMAC (or AES-ECB) of a fixed block under the candidate key, computed inside the token. */
  fingerprint: Buffer;
  /** Only for `target.kind === 'host'`; the caller must zero it after use. */
  material?: Buffer;
  /** Only for `target.kind === 'wrapped'`: the material wrapped under the master key (no secret). */
  wrapped?: Buffer;
}

/** What the token holds, by CKA_ID (see `Hsm.listObjectIds`). */
export interface HsmObjectIds {
  /** Version keys: secret keys and the private halves of version key pairs (CKA_UNWRAP false). */
  versionKeys: string[];
  /** Private halves of BYOK wrapping pairs (CKA_UNWRAP true). */
  wrappingPairs: string[];
}

/** The session pool's load (metrics): concurrency is bounded by `size` (KMS_HSM_SESSIONS). */
export interface HsmSessionStats {
  size: number;
  open: number;
  inUse: number;
  /** Calls waiting for a free session. */
  waiting: number;
}

export interface Hsm {
  info(): HsmInfo;
  sessionStats(): HsmSessionStats;

  /**
   * Version keys, addressed by version id (CKA_ID) whatever their spec. Secret keys and
   * private halves are token objects, sensitive and non-extractable — read back after
   * creation, and refused (destroyed, InternalFailure) if the token made them readable. The
   * public half of a pair is a token object too (public, CKA_ID = version id).
   */
  generateVersionKey(versionId: string, spec: VersionKeySpec): Promise<void>;
  /** Whether this token can generate and use keys of `spec` (EC curves and SM2 are probed). */
  supportsVersionKey(spec: VersionKeySpec): boolean;
  hasVersionKey(versionId: string): Promise<boolean>;
  /** Destroys the version's token objects (secret key, or both halves of a pair); true when one existed. */
  destroyVersionKey(versionId: string): Promise<boolean>;
  /** DER SubjectPublicKeyInfo of a key pair version. */
  versionPublicKey(versionId: string): Promise<Buffer>;
  /**
   * Signs a SHA-256 digest inside the token with a pair's private half; ECDSA signatures are
   * returned DER-encoded (as openssl expects), not PKCS#11's r ‖ s.
   */
  signWithVersionKey(versionId: string, algorithm: SigningAlgorithm, digest: Buffer): Promise<Buffer>;
  /**
   * SOFTWARE tier: node:crypto cannot sign a precomputed digest (it always hashes), so the
   * token signs with a transient, sensitive session copy of the unsealed private key
   * (PKCS#8 DER), destroyed at once. The caller zeroes its buffer.
   */
  signWithKeyMaterial(privateKeyPkcs8: Buffer, algorithm: SigningAlgorithm, digest: Buffer): Promise<Buffer>;
  /**
   * Verifies a signature over a SHA-256 digest with a public key (DER SPKI), in the token:
   * node:crypto only verifies over messages it hashes itself. A malformed signature is false.
   */
  verifyWithPublicKey(publicKeyDer: Buffer, algorithm: SigningAlgorithm, digest: Buffer, signature: Buffer): Promise<boolean>;
  /** Whether AsymmetricDecrypt with `algorithm` works here (natively, or through the allowed fallback). */
  supportsAsymmetricDecryption(algorithm: AsymmetricEncryptionAlgorithm): boolean;
  /**
   * RSA-OAEP decryption with a pair's private half. Native CKM_RSA_PKCS_OAEP when the token
   * does the hash; else, for OAEP-SHA256 outside strict mode, CKM_RSA_X_509 in the token and
   * EME-OAEP decoding on the host (DESIGN.md, the same fallback as BYOK import). Every
   * failure is one InvalidCiphertext (no padding oracle).
   */
  decryptWithVersionKeyPair(versionId: string, algorithm: AsymmetricEncryptionAlgorithm, ciphertext: Buffer): Promise<Buffer>;
  /** AES-GCM inside the token with a fresh 12-byte IV. */
  encryptWithVersionKey(versionId: string, plaintext: Buffer, aad: Buffer | undefined): Promise<AesGcmSealed>;
  /** Throws KmsError InvalidCiphertext when the tag does not verify. */
  decryptWithVersionKey(versionId: string, sealed: AesGcmSealed, aad: Buffer | undefined): Promise<Buffer>;
  /**
   * HMAC of `message` inside the token (C_Sign, CKM_SHA*_HMAC) with a version's generic-secret
   * key. Verification recomputes this and compares in constant time (services/mac.ts), so
   * one token operation serves both actions.
   */
  macWithVersionKey(versionId: string, algorithm: MacAlgorithm, message: Buffer): Promise<Buffer>;

  // ---- HsmEncryptedDatabase: version keys wrapped under the master key ---------------------

  /** Whether the token has its master wrapping key (`kms hsm init` creates it; looked up again when absent). */
  hasMasterWrappingKey(): Promise<boolean>;
  /** Whether keys of `spec` can be held wrapped (AES, HMAC, and the RSA/EC pairs this token makes). */
  supportsWrappedVersionKey(spec: VersionKeySpec): boolean;
  /**
   * Generates a version key (or pair) in the token (sensitive, wrap-with-trusted), returns it
   * wrapped with AES-KWP under the master (a pair: its private half, and the public half as
   * DER), and leaves nothing in the token.
   * @throws ServiceUnavailableTemporary when the token has no master wrapping key
   */
  generateWrappedVersionKey(versionId: string, spec: VersionKeySpec): Promise<WrappedMaterial>;
  /** AES-GCM inside the token with the unwrapped key (a cached session object) and a fresh IV. */
  encryptWithWrappedKey(key: WrappedVersionKey, plaintext: Buffer, aad: Buffer | undefined): Promise<AesGcmSealed>;
  /** Throws KmsError InvalidCiphertext when the tag does not verify. */
  decryptWithWrappedKey(key: WrappedVersionKey, sealed: AesGcmSealed, aad: Buffer | undefined): Promise<Buffer>;
  macWithWrappedKey(key: WrappedVersionKey, algorithm: MacAlgorithm, message: Buffer): Promise<Buffer>;
  fingerprintWrappedKey(key: WrappedVersionKey): Promise<Buffer>;
  /** As `signWithVersionKey`, with a wrapped pair's private half unwrapped into the token. */
  signWithWrappedKeyPair(key: WrappedVersionKeyPair, algorithm: SigningAlgorithm, digest: Buffer): Promise<Buffer>;
  /** As `decryptWithVersionKeyPair` (one InvalidCiphertext for every failure), with a wrapped pair. */
  decryptWithWrappedKeyPair(key: WrappedVersionKeyPair, algorithm: AsymmetricEncryptionAlgorithm, ciphertext: Buffer): Promise<Buffer>;
  /** Destroys this process's unwrapped copy of the version's key, if it has one. */
  forgetWrappedKey(versionId: string): void;

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
   * The CKA_IDs of the service's objects in the token, for the reconciler: version keys
   * (secret keys and version pairs' private halves) and wrapping pairs' private halves, whose id is a UUID.
   * The service's own keys (root key, import-token MAC key) and objects of other applications
   * (ids that are not UUIDs) are never listed.
   */
  listObjectIds(): Promise<HsmObjectIds>;

  /**
   * Signs an audit digest (its canonical serialisation) with the token's audit digest key:
   * ECDSA P-256 over SHA-256(message), DER-encoded, the private half sensitive and
   * non-extractable (created at first start). Returns the public key that verifies it.
   */
  signAuditDigest(message: Buffer): Promise<{ signature: Buffer; publicKeyDer: Buffer }>;
  /** DER SPKI of the token's audit digest keys (what `kms audit verify` trusts). */
  auditDigestPublicKeys(): Promise<Buffer[]>;
  /**
   * A chain's audit anchor kept in the token (the newest digest signed for it, as the caller
   * serialised it), which the database cannot move: none when the token has none, and for the
   * moment a write replaces it, the old and the new one.
   */
  readAuditAnchor(chainId: number): Promise<Buffer[]>;
  writeAuditAnchor(chainId: number, value: Buffer): Promise<void>;
  /** Destroys every audit anchor (the trail was emptied on purpose: `kms reset`). @returns how many */
  clearAuditAnchors(): Promise<number>;

  close(): Promise<void>;
}
