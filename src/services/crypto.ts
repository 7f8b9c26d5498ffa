import { decodeCiphertextBlob, encodeCiphertextBlob, encryptionContextAad, parseEncryptionContext } from '../domain/ciphertext.js';
import { dryRunSucceeded } from '../domain/dry-run.js';
import { KmsError, internalFailure, invalidParameter, keyNotFound } from '../domain/errors.js';
import { assertAllowed, assertUsageAllows } from '../domain/key.js';
import type { AesGcmSealed } from '../hsm/hsm.js';
import { getKey } from '../store/keys.js';
import { getVersion } from '../store/versions.js';
import type { KeyVersion } from '../domain/key-version.js';
import type { Caller, ServiceDeps } from './context.js';
import { authorizeKey, loadKey } from './key-lookup.js';

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
  const key = await loadKey(deps, deps.db, input.keyId, caller);
  // The usage table (domain/key.ts): only symmetric ENCRYPT/DECRYPT keys encrypt with AES-GCM.
  assertUsageAllows('Encrypt', key);
  assertAllowed('Encrypt', key.state);
  if (!key.primaryVersionId) throw internalFailure('The key has no primary version.');
  const version = await getVersion(deps.db, key.primaryVersionId);
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
  const version = await getVersion(deps.db, blob.keyVersionId);
  if (!version) throw keyNotFound();
  const key = await getKey(deps.db, version.keyId);
  if (!key) throw keyNotFound();
  authorizeKey(caller, key);
  assertUsageAllows('Decrypt', key);
  assertAllowed('Decrypt', key.state);
  if (!version.hasMaterial) throw new KmsError('Rejected.PendingImport', 'The key material of this version is not imported.');
  const plaintext = await openWith(deps, version, blob, aad);
  if (input.dryRun) {
    plaintext.fill(0);
    throw dryRunSucceeded();
  }
  return { keyId: key.id, keyVersionId: version.id, plaintext: plaintext.toString('utf8') };
}

/** Tier dispatch: token versions encrypt inside the HSM; sealed versions in node:crypto. */
export async function sealWith(deps: ServiceDeps, version: KeyVersion, plaintext: Buffer, aad: Buffer | undefined): Promise<AesGcmSealed> {
  if (version.storage === 'token') return deps.hsm.encryptWithVersionKey(version.id, plaintext, aad);
  const material = await softwareMaterial(deps, version);
  return deps.software.encrypt(material, plaintext, aad);
}

export async function openWith(deps: ServiceDeps, version: KeyVersion, sealed: AesGcmSealed, aad: Buffer | undefined): Promise<Buffer> {
  if (version.storage === 'token') return deps.hsm.decryptWithVersionKey(version.id, sealed, aad);
  const material = await softwareMaterial(deps, version);
  return deps.software.decrypt(material, sealed, aad);
}

/** A sealed version's material, unsealed from the root key into the SOFTWARE cache (zeroed on eviction). */
export function softwareMaterial(deps: ServiceDeps, version: KeyVersion): Promise<Buffer> {
  return deps.software.material(version.id, async () => {
    if (!version.sealedMaterial) throw internalFailure('The sealed material of this version is missing.');
    return deps.hsm.unsealWithRootKey(version.sealedMaterial, Buffer.from(version.id));
  });
}
