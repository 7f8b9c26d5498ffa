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
 * - `token`: a sensitive, non-extractable HSM object whose CKA_ID is the version id;
 * - `sealed`: sealed under the HSM root key in Postgres (SOFTWARE tier);
 * - `wrapped`: reserved for HSM-wrapped blobs (HsmEncryptedDatabase, issue 16).
 */
export type VersionStorage = 'token' | 'sealed' | 'wrapped';

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
