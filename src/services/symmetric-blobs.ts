/**
 * The two halves every symmetric use case shares (data keys, ReEncrypt): seal bytes under a
 * key's primary version into an Alibaba-compatible blob, and open a blob with the version
 * named inside it. Encrypt/Decrypt (services/crypto.ts) follow the same steps; the tier
 * dispatch (`sealWith` / `openWith`) is theirs.
 */
import { decodeCiphertextBlob, encodeCiphertextBlob } from '../domain/ciphertext.js';
import { KmsError, internalFailure, keyNotFound } from '../domain/errors.js';
import { type Key, type KeyAction, type UsageAction } from '../domain/key.js';
import type { KeyVersion } from '../domain/key-version.js';
import type { Caller, ServiceDeps } from './context.js';
import { openWith, sealWith } from './crypto.js';
import { authorizeKey, findKey } from './key-lookup.js';
import { admitKeyUse } from './throttling.js';

/** A key ready to encrypt: the key and its primary version (seed 002). */
export interface SealingKey {
  key: Key;
  version: KeyVersion;
}

/** The actions served here: each has a row in both tables of domain/key.ts (state and usage). */
export type SymmetricAction = KeyAction & UsageAction;

/**
 * Loads the key a `KeyId` names, for `action`, with its primary version (seed 002: encryption
 * always uses the primary version).
 * @throws Forbidden.KeyNotFound / Forbidden.AliasNotFound (404, also for a key the caller may
 *   not see), Rejected.<State> (409), Rejected.UnsupportedOperation
 */
export async function sealingKey(deps: ServiceDeps, reference: string, action: SymmetricAction, caller: Caller): Promise<SealingKey> {
  const key = await findKey(deps, reference, caller);
  // Only symmetric ENCRYPT/DECRYPT keys hold AES material these actions use (the usage table).
  await admitKeyUse(deps, key, action, caller);
  if (!key.primaryVersionId) throw internalFailure('The key has no primary version.');
  const version = await deps.repositories.versions.byId(key.primaryVersionId);
  if (!version) throw internalFailure('The primary version of the key is missing.');
  return { key, version };
}

/** Seals `plaintext` under the sealing key; returns the blob (base64). */
export async function sealToBlob(deps: ServiceDeps, target: SealingKey, plaintext: Buffer, aad: Buffer | undefined): Promise<string> {
  const sealed = await sealWith(deps, target.version, plaintext, aad);
  return encodeCiphertextBlob({ keyVersionId: target.version.id, ...sealed });
}

export interface OpenedBlob {
  key: Key;
  version: KeyVersion;
  /** The caller must zero it (`fill(0)`) once used. */
  plaintext: Buffer;
}

/**
 * Opens a blob with the version named inside it, whatever the key's primary version is now
 * (seed 002). A version of a key the caller may not see is answered as a missing key.
 * @throws InvalidCiphertext (also for a wrong EncryptionContext), Forbidden.KeyNotFound (404),
 *   Rejected.<State> (409), Rejected.UnsupportedOperation
 */
export async function openBlob(deps: ServiceDeps, blobText: string, aad: Buffer | undefined, action: SymmetricAction, caller: Caller): Promise<OpenedBlob> {
  const blob = decodeCiphertextBlob(blobText);
  const version = await deps.repositories.versions.byId(blob.keyVersionId);
  if (!version) throw keyNotFound();
  const key = await deps.repositories.keys.byId(version.keyId);
  if (!key) throw keyNotFound();
  authorizeKey(caller, key);
  // Only symmetric ENCRYPT/DECRYPT keys hold AES material these actions use (the usage table).
  await admitKeyUse(deps, key, action, caller);
  if (!version.hasMaterial) throw new KmsError('Rejected.PendingImport', 'The key material of this version is not imported.');
  const plaintext = await openWith(deps, version, blob, aad);
  return { key, version, plaintext };
}
