/**
 * The asymmetric use cases (issue 15, alibaba-api.md §3.4): GetPublicKey, AsymmetricSign /
 * AsymmetricVerify and AsymmetricEncrypt / AsymmetricDecrypt, on both tiers. Every one names
 * its version (`KeyVersionId`, required as in Alibaba's API) and checks, in order: the key
 * exists and is visible, its usage allows the action (domain/key.ts usage table), its state
 * does, and the version belongs to it.
 *
 * Tier dispatch: a `token` version's private half is in the HSM (sign and decrypt there); a
 * `sealed` version's PKCS#8 is unsealed from the root key into the SOFTWARE cache (decrypt
 * with node:crypto, sign through `Hsm.signWithKeyMaterial`). Public-key operations (verify,
 * encrypt) only need the public key and run alike for both tiers.
 */
import { constants, createPublicKey, publicEncrypt } from 'node:crypto';
import {
  type AsymmetricEncryptionAlgorithm,
  type SigningAlgorithm,
  assertEncryptionAlgorithm,
  assertSigningAlgorithm,
  decodeBase64Param,
  decodeDigest,
  maxOaepPlaintextBytes,
  oaepHash,
} from '../domain/asymmetric.js';
import { dryRunSucceeded } from '../domain/dry-run.js';
import { internalFailure, invalidParameter, keyVersionNotFound } from '../domain/errors.js';
import { isVersionId } from '../domain/ids.js';
import { type Key, type KeyAction, type UsageAction, assertUsageAllows, keyShape } from '../domain/key.js';
import type { KeyVersion } from '../domain/key-version.js';
import type { Caller, ServiceDeps } from './context.js';
import { decryptUnderVersion, publicKeyOfVersion, signUnderVersion } from './version-material.js';
import { findKey } from './key-lookup.js';
import { admitKeyUse } from './throttling.js';

export interface AsymmetricTarget {
  /** `KeyId`: an id, alias or ARN. */
  keyId: string;
  keyVersionId: string;
  /** §3.4 DryRun: every check runs, then DryRunOperationError instead of the operation. */
  dryRun?: boolean | undefined;
}

type AsymmetricAction = UsageAction & KeyAction;

/**
 * The key and version an asymmetric action works on.
 * @throws Forbidden.KeyNotFound / Forbidden.AliasNotFound (404; also for a version of another
 *   key), Rejected.UnsupportedOperation (400, wrong usage), Rejected.<State> (409)
 */
export async function loadAsymmetricVersion(
  deps: ServiceDeps,
  target: AsymmetricTarget,
  action: AsymmetricAction,
  caller: Caller,
): Promise<{ key: Key; version: KeyVersion }> {
  const key = await findKey(deps, target.keyId, caller);
  await admitKeyUse(deps, key, action, caller);
  // Checked before the query: the column is a uuid, and text that is none names no version
  // (Forbidden.KeyNotFound as documented, not the store's InvalidParameter).
  if (!isVersionId(target.keyVersionId)) throw keyVersionNotFound();
  const version = await deps.repositories.versions.byId(target.keyVersionId.toLowerCase());
  if (!version || version.keyId !== key.id) throw keyVersionNotFound();
  if (!version.hasMaterial) throw internalFailure('An asymmetric version has no material.');
  return { key, version };
}

/** GetPublicKey: PEM SubjectPublicKeyInfo. */
export async function getPublicKey(
  deps: ServiceDeps,
  target: AsymmetricTarget,
  caller: Caller,
): Promise<{ keyId: string; keyVersionId: string; publicKeyPem: string }> {
  const { key, version } = await loadAsymmetricVersion(deps, target, 'GetPublicKey', caller);
  if (target.dryRun) throw dryRunSucceeded();
  const der = await publicKeyOfVersion(deps, version);
  const pem = createPublicKey({ key: der, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }).toString();
  return { keyId: key.id, keyVersionId: version.id, publicKeyPem: pem };
}

/** AsymmetricSign: `Digest` is the base64 SHA-256 digest; the signature is base64 (DER for ECDSA). */
export async function asymmetricSign(
  deps: ServiceDeps,
  input: AsymmetricTarget & { algorithm: string; digest: string },
  caller: Caller,
): Promise<{ keyId: string; keyVersionId: string; value: string }> {
  const { key, version } = await loadAsymmetricVersion(deps, input, 'AsymmetricSign', caller);
  const algorithm = assertSigningAlgorithm(keyShape(key.keySpec), input.algorithm);
  const digest = decodeDigest(input.digest);
  if (input.dryRun) throw dryRunSucceeded();
  const signature = await signWith(deps, key, version, algorithm, digest);
  return { keyId: key.id, keyVersionId: version.id, value: signature.toString('base64') };
}

/** AsymmetricVerify: `Value` true only when the signature verifies over the digest. */
export async function asymmetricVerify(
  deps: ServiceDeps,
  input: AsymmetricTarget & { algorithm: string; digest: string; value: string },
  caller: Caller,
): Promise<{ keyId: string; keyVersionId: string; value: boolean }> {
  const { key, version } = await loadAsymmetricVersion(deps, input, 'AsymmetricVerify', caller);
  const algorithm = assertSigningAlgorithm(keyShape(key.keySpec), input.algorithm);
  const digest = decodeDigest(input.digest);
  const signature = decodeBase64Param('Value', input.value);
  if (input.dryRun) throw dryRunSucceeded();
  const valid = signature.length > 0 && (await deps.hsm.verifyWithPublicKey(await publicKeyOfVersion(deps, version), algorithm, digest, signature));
  return { keyId: key.id, keyVersionId: version.id, value: valid };
}

/** AsymmetricEncrypt with the version's public key (RSA-OAEP, node:crypto on both tiers). */
export async function asymmetricEncrypt(
  deps: ServiceDeps,
  input: AsymmetricTarget & { algorithm: string; plaintext: string },
  caller: Caller,
): Promise<{ keyId: string; keyVersionId: string; ciphertextBlob: string }> {
  const { key, version } = await loadAsymmetricVersion(deps, input, 'AsymmetricEncrypt', caller);
  const shape = keyShape(key.keySpec);
  const algorithm = assertEncryptionAlgorithm(shape, input.algorithm);
  const plaintext = decodeBase64Param('Plaintext', input.plaintext);
  const max = shape.kind === 'rsa' ? maxOaepPlaintextBytes(shape.bits, algorithm) : 0;
  if (plaintext.length === 0 || plaintext.length > max) {
    throw invalidParameter('Plaintext', `It must be the base64 of 1 to ${max} bytes for ${key.keySpec} with ${algorithm}.`);
  }
  if (input.dryRun) throw dryRunSucceeded();
  const publicKey = createPublicKey({ key: await publicKeyOfVersion(deps, version), format: 'der', type: 'spki' });
  const ciphertext = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: oaepHash(algorithm) }, plaintext);
  return { keyId: key.id, keyVersionId: version.id, ciphertextBlob: ciphertext.toString('base64') };
}

/**
 * AsymmetricDecrypt — also the service ReEncrypt's asymmetric source form calls (pass
 * `action: 'ReEncryptFromAsymmetric'` there so the usage and state tables answer for it).
 * The plaintext is returned as bytes; the action base64-encodes it.
 * @throws InvalidCiphertext (400) for every decryption failure (no padding oracle);
 *   Rejected.UnsupportedOperation when the HSM cannot do the algorithm (strict mode and no
 *   native OAEP-SHA256)
 */
export async function asymmetricDecrypt(
  deps: ServiceDeps,
  input: AsymmetricTarget & { algorithm: string; ciphertextBlob: string | Buffer; action?: 'AsymmetricDecrypt' | 'ReEncryptFromAsymmetric' },
  caller: Caller,
): Promise<{ keyId: string; keyVersionId: string; plaintext: Buffer }> {
  // ReEncrypt's asymmetric source is decrypted exactly as AsymmetricDecrypt would (same state row).
  const { key, version } = await loadAsymmetricVersion(deps, input, 'AsymmetricDecrypt', caller);
  if (input.action === 'ReEncryptFromAsymmetric') assertUsageAllows('ReEncryptFromAsymmetric', key);
  const algorithm = assertEncryptionAlgorithm(keyShape(key.keySpec), input.algorithm);
  const ciphertext =
    typeof input.ciphertextBlob === 'string' ? decodeBase64Param('CiphertextBlob', input.ciphertextBlob) : input.ciphertextBlob;
  if (input.dryRun) throw dryRunSucceeded();
  const plaintext = await decryptWith(deps, key, version, algorithm, ciphertext);
  return { keyId: key.id, keyVersionId: version.id, plaintext };
}

// ---- storage dispatch: services/version-material.ts ------------------------------------------

function signWith(deps: ServiceDeps, key: Key, version: KeyVersion, algorithm: SigningAlgorithm, digest: Buffer): Promise<Buffer> {
  return signUnderVersion(deps, key, version, algorithm, digest);
}

function decryptWith(deps: ServiceDeps, key: Key, version: KeyVersion, algorithm: AsymmetricEncryptionAlgorithm, ciphertext: Buffer): Promise<Buffer> {
  return decryptUnderVersion(deps, key, version, algorithm, ciphertext);
}
