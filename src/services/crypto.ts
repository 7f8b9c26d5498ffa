import { decodeCiphertextBlob, encodeCiphertextBlob, encryptionContextAad, parseEncryptionContext } from '../domain/ciphertext.js';
import { dryRunSucceeded } from '../domain/dry-run.js';
import { KmsError, internalFailure, invalidParameter, keyNotFound } from '../domain/errors.js';
import type { AesGcmSealed } from '../hsm/hsm.js';
import type { KeyVersion } from '../domain/key-version.js';
import type { Caller, ServiceDeps } from './context.js';
import { authorizeKey, findKey } from './key-lookup.js';
import { admitKeyUse } from './throttling.js';
import { openUnderVersion, sealUnderVersion, softwareMaterial } from './version-material.js';

/** alibaba-api.md §3.4: Plaintext ≤ 6 KB. */
export const MAX_PLAINTEXT_BYTES = 6 * 1024;

export interface EncryptResult {
  keyId: string;
  keyVersionId: string;
  ciphertextBlob: string;
}

/**
 * Encrypt with the key's primary version (seed 002: encryption always uses the primary
 * version). Plaintext is an opaque string, returned verbatim by Decrypt (§5.9).
 * @throws Forbidden.KeyNotFound, Rejected.<State>, InvalidParameter, DryRunOperationError (§3.4)
 */
export async function encrypt(
  deps: ServiceDeps,
  input: { keyId: string; plaintext: string; encryptionContext?: string | undefined; dryRun?: boolean | undefined },
  caller: Caller,
): Promise<EncryptResult> {
  const plaintext = Buffer.from(input.plaintext, 'utf8');
  if (plaintext.length === 0 || plaintext.length > MAX_PLAINTEXT_BYTES) {
    throw invalidParameter('Plaintext', `It must be 1 to ${MAX_PLAINTEXT_BYTES} bytes.`);
  }
  const aad = encryptionContextAad(parseEncryptionContext(input.encryptionContext));
  const key = await findKey(deps, input.keyId, caller);
  // The usage table (domain/key.ts): only symmetric ENCRYPT/DECRYPT keys encrypt with AES-GCM.
  await admitKeyUse(deps, key, 'Encrypt', caller);
  if (!key.primaryVersionId) throw internalFailure('The key has no primary version.');
  const version = await deps.repositories.versions.byId(key.primaryVersionId);
  if (!version) throw internalFailure('The primary version of the key is missing.');
  if (input.dryRun) throw dryRunSucceeded();
  const sealed = await sealWith(deps, version, plaintext, aad);
  return {
    keyId: key.id,
    keyVersionId: version.id,
    ciphertextBlob: encodeCiphertextBlob({ keyVersionId: version.id, ...sealed }),
  };
}

export interface DecryptResult {
  keyId: string;
  keyVersionId: string;
  plaintext: string;
}

/**
 * Decrypt with the version named inside the blob (seed 002), whatever the primary version is now.
 * @throws InvalidCiphertext (also for a wrong EncryptionContext), Forbidden.KeyNotFound, Rejected.<State>,
 *   DryRunOperationError (§3.4: after the blob opened, so a dry run also checks the context)
 */
export async function decrypt(
  deps: ServiceDeps,
  input: { ciphertextBlob: string; encryptionContext?: string | undefined; dryRun?: boolean | undefined },
  caller: Caller,
): Promise<DecryptResult> {
  const blob = decodeCiphertextBlob(input.ciphertextBlob);
  const aad = encryptionContextAad(parseEncryptionContext(input.encryptionContext));
  const version = await deps.repositories.versions.byId(blob.keyVersionId);
  if (!version) throw keyNotFound();
  const key = await deps.repositories.keys.byId(version.keyId);
  if (!key) throw keyNotFound();
  authorizeKey(caller, key);
  await admitKeyUse(deps, key, 'Decrypt', caller);
  if (!version.hasMaterial) throw new KmsError('Rejected.PendingImport', 'The key material of this version is not imported.');
  const plaintext = await openWith(deps, version, blob, aad);
  if (input.dryRun) {
    plaintext.fill(0);
    throw dryRunSucceeded();
  }
  return { keyId: key.id, keyVersionId: version.id, plaintext: plaintext.toString('utf8') };
}

/** Storage dispatch (services/version-material.ts): token and wrapped versions encrypt inside the HSM; sealed versions in node:crypto. */
export async function sealWith(deps: ServiceDeps, version: KeyVersion, plaintext: Buffer, aad: Buffer | undefined): Promise<AesGcmSealed> {
  const sealed = await sealUnderVersion(deps, version, plaintext, aad);
  // Every seal draws a random IV under this version: its usage against the 2^32 bound (domain/version-usage.ts).
  deps.encryptions.countEncryption(version.id);
  return sealed;
}

export function openWith(deps: ServiceDeps, version: KeyVersion, sealed: AesGcmSealed, aad: Buffer | undefined): Promise<Buffer> {
  return openUnderVersion(deps, version, sealed, aad);
}

export { softwareMaterial };
