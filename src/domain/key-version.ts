/**
 * A key version (seed 002): "the versions of a key are cryptographically unrelated"; rotation
 * adds one and makes it primary; versions are deleted only with their key. Its id is a UUID,
 * the 36-character prefix of every ciphertext it makes (alibaba-api.md §5.9).
 */

/**
 * `Enabled`: usable; the primary one encrypts, every one decrypts what it made.
 * `PendingRotation`: imported new material waiting to be rotated in (seed 002, BYOK rotation).
 */
export type KeyVersionState = 'Enabled' | 'PendingRotation';

/**
 * Where the material is held:
 * - `token`: a sensitive, non-extractable HSM object whose CKA_ID is the version id
 *   (HSM tier, `HsmInternal`);
 * - `sealed`: sealed under the HSM root key in Postgres (SOFTWARE tier);
 * - `wrapped`: AES-KWP-wrapped under the HSM's trusted master key, in Postgres, unwrapped
 *   only inside the HSM (HSM tier, `HsmEncryptedDatabase`).
 */
export type VersionStorage = 'token' | 'sealed' | 'wrapped';

/** Where a key's versions keep their material: by protection level and (HSM) storage mechanism. */
export function versionStorageOf(key: { protectionLevel: 'SOFTWARE' | 'HSM'; storageMechanism: 'HsmInternal' | 'HsmEncryptedDatabase' | null }): VersionStorage {
  if (key.protectionLevel === 'SOFTWARE') return 'sealed';
  return key.storageMechanism === 'HsmEncryptedDatabase' ? 'wrapped' : 'token';
}

export interface KeyVersion {
  id: string;
  keyId: string;
  /** The instance whose key quota this version consumes; null for a default key. */
  instanceId: string | null;
  /** 1 for the version made with the key, then 2, 3, … */
  ordinal: number;
  state: KeyVersionState;
  storage: VersionStorage;
  /** `sealed` storage only. */
  sealedMaterial: Buffer | null;
  /** `wrapped` storage only: the AES-KWP blob under the HSM master key; null without material. */
  wrappedMaterial: Buffer | null;
  /** `wrapped` key pairs only: the public half, DER SubjectPublicKeyInfo (no token object holds it). */
  publicKey: Buffer | null;
  /** False while imported material is absent (not yet imported, expired or deleted). */
  hasMaterial: boolean;
  /**
   * Imported material only: an in-HSM MAC of a fixed block under the material. Seed 000: a
   * version is bound forever to its first material; only the same material may come back.
   */
  materialFingerprint: Buffer | null;
  /** Imported material only: when KMS deletes it (seed 000's MaterialExpireTime). */
  materialExpireAt: Date | null;
  createdAt: Date;
}
