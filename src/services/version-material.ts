/**
 * The one dispatch on where a version's material lives (domain/key-version.ts `storage`):
 * - `token` (HSM tier, HsmInternal): a token object addressed by version id;
 * - `wrapped` (HSM tier, HsmEncryptedDatabase): an AES-KWP blob in the row, unwrapped only
 *   inside the HSM into a cached session object;
 * - `sealed` (SOFTWARE tier): unsealed from the HSM root key into the process's cache.
 * Every use case that needs a version's key for AES-GCM, HMAC, signing, RSA decryption, its
 * public half, new material or its removal comes through here, so a storage kind is added in
 * one file.
 */
import type { AsymmetricEncryptionAlgorithm, SigningAlgorithm } from '../domain/asymmetric.js';
import { internalFailure, unavailable, unsupportedOperation } from '../domain/errors.js';
import type { KeyVersion, VersionStorage } from '../domain/key-version.js';
import type { MacAlgorithm } from '../domain/mac.js';
import { type AesGcmSealed, type VersionKeySpec, type WrappedMaterial, type WrappedVersionKey, type WrappedVersionKeyPair, versionKeySpec } from '../hsm/hsm.js';
import { decryptWithPkcs8, publicKeyOfPkcs8 } from '../hsm/software-key-pairs.js';
import { hmacWithMaterial } from '../hsm/software-mac.js';
import type { ServiceDeps } from './context.js';

/** AES-GCM under the version's key, with a fresh IV. */
export async function sealUnderVersion(deps: ServiceDeps, version: KeyVersion, plaintext: Buffer, aad: Buffer | undefined): Promise<AesGcmSealed> {
  switch (version.storage) {
    case 'token':
      return deps.hsm.encryptWithVersionKey(version.id, plaintext, aad);
    case 'wrapped':
      return deps.hsm.encryptWithWrappedKey(wrappedKeyOf(version), plaintext, aad);
    case 'sealed':
      return deps.software.encrypt(await softwareMaterial(deps, version), plaintext, aad);
  }
}

/** @throws InvalidCiphertext when the tag does not verify */
export async function openUnderVersion(deps: ServiceDeps, version: KeyVersion, sealed: AesGcmSealed, aad: Buffer | undefined): Promise<Buffer> {
  switch (version.storage) {
    case 'token':
      return deps.hsm.decryptWithVersionKey(version.id, sealed, aad);
    case 'wrapped':
      return deps.hsm.decryptWithWrappedKey(wrappedKeyOf(version), sealed, aad);
    case 'sealed':
      return deps.software.decrypt(await softwareMaterial(deps, version), sealed, aad);
  }
}

/** HMAC of `message` with a MAC key's version. */
export async function macUnderVersion(deps: ServiceDeps, version: KeyVersion, algorithm: MacAlgorithm, message: Buffer): Promise<Buffer> {
  switch (version.storage) {
    case 'token':
      return deps.hsm.macWithVersionKey(version.id, algorithm, message);
    case 'wrapped':
      return deps.hsm.macWithWrappedKey(wrappedKeyOf(version), algorithm, message);
    case 'sealed':
      return hmacWithMaterial(await softwareMaterial(deps, version), algorithm, message);
  }
}

/** What a new version row carries for its material (a `token` version's object is made just before the commit). */
export interface NewVersionMaterial {
  sealedMaterial: Buffer | null;
  wrappedMaterial: Buffer | null;
  /** Wrapped key pairs: the public half (DER SPKI). */
  publicKey: Buffer | null;
}

const NO_MATERIAL: NewVersionMaterial = { sealedMaterial: null, wrappedMaterial: null, publicKey: null };

/** A wrapped version key as the row stores it. */
export const wrappedRowMaterial = (w: WrappedMaterial): NewVersionMaterial => ({ sealedMaterial: null, wrappedMaterial: w.wrapped, publicKey: w.publicKeyDer ?? null });

/**
 * Material for a new, KMS-generated version: SOFTWARE material sealed under the root key, or
 * (HsmEncryptedDatabase) a key generated in the HSM and returned wrapped — in both cases
 * stored with the row, in the row's transaction, so nothing is left anywhere if it rolls
 * back. `token` versions get nothing here: their object is generated ahead of the
 * transaction (services/version-key-ahead.ts), as DESIGN.md's crash-consistency rule says.
 */
export async function newVersionMaterial(
  deps: ServiceDeps,
  versionId: string,
  storage: VersionStorage,
  spec: VersionKeySpec,
  sealNew: (versionId: string, spec: VersionKeySpec) => Promise<Buffer>,
): Promise<NewVersionMaterial> {
  switch (storage) {
    case 'token':
      return NO_MATERIAL;
    case 'wrapped':
      return wrappedRowMaterial(await deps.hsm.generateWrappedVersionKey(versionId, spec));
    case 'sealed':
      return { ...NO_MATERIAL, sealedMaterial: await sealNew(versionId, spec) };
  }
}

/**
 * Removes what the HSM or this process holds of a version's material: a `token` version's
 * objects are destroyed; a `wrapped` version's unwrapped session object and a `sealed`
 * version's cached material are dropped (their blobs go with the row update or deletion).
 */
export async function releaseVersionMaterial(deps: ServiceDeps, version: Pick<KeyVersion, 'id' | 'storage'>): Promise<void> {
  switch (version.storage) {
    case 'token':
      await deps.hsm.destroyVersionKey(version.id);
      return;
    case 'wrapped':
      deps.hsm.forgetWrappedKey(version.id);
      return;
    case 'sealed':
      deps.software.forget(version.id);
      return;
  }
}

// ---- key pairs (asymmetric keys) ------------------------------------------------------------------

/** DER SubjectPublicKeyInfo of a key pair version. */
export async function publicKeyOfVersion(deps: ServiceDeps, version: KeyVersion): Promise<Buffer> {
  switch (version.storage) {
    case 'token':
      return deps.hsm.versionPublicKey(version.id);
    case 'wrapped':
      if (!version.publicKey) throw internalFailure('The public key of this wrapped version is missing.');
      return version.publicKey;
    case 'sealed':
      return publicKeyOfPkcs8(await softwareMaterial(deps, version));
  }
}

/** Signs a SHA-256 digest with a key pair version's private half. */
export async function signUnderVersion(deps: ServiceDeps, key: KeyShape, version: KeyVersion, algorithm: SigningAlgorithm, digest: Buffer): Promise<Buffer> {
  switch (version.storage) {
    case 'token':
      return deps.hsm.signWithVersionKey(version.id, algorithm, digest);
    case 'wrapped':
      return deps.hsm.signWithWrappedKeyPair(wrappedPairOf(key, version), algorithm, digest);
    case 'sealed':
      return deps.hsm.signWithKeyMaterial(await softwareMaterial(deps, version), algorithm, digest);
  }
}

/**
 * RSA-OAEP decryption with a key pair version (one InvalidCiphertext for every failure).
 * @throws Rejected.UnsupportedOperation when the HSM can do neither the native OAEP nor the allowed fallback
 */
export async function decryptUnderVersion(
  deps: ServiceDeps,
  key: KeyShape,
  version: KeyVersion,
  algorithm: AsymmetricEncryptionAlgorithm,
  ciphertext: Buffer,
): Promise<Buffer> {
  if (version.storage === 'sealed') return decryptWithPkcs8(await softwareMaterial(deps, version), algorithm, ciphertext);
  if (!deps.hsm.supportsAsymmetricDecryption(algorithm)) {
    throw unsupportedOperation(`This HSM cannot decrypt ${algorithm} natively, and strict mode (KMS_IMPORT_STRICT) refuses the host OAEP decoding.`);
  }
  if (version.storage === 'wrapped') return deps.hsm.decryptWithWrappedKeyPair(wrappedPairOf(key, version), algorithm, ciphertext);
  return deps.hsm.decryptWithVersionKeyPair(version.id, algorithm, ciphertext);
}

/** What of a key decides how its wrapped versions unwrap. */
export type KeyShape = Parameters<typeof versionKeySpec>[0];

function wrappedPairOf(key: KeyShape, version: KeyVersion): WrappedVersionKeyPair {
  const spec = versionKeySpec(key);
  if (spec.kind !== 'rsa' && spec.kind !== 'ec') throw internalFailure('The key is not a key pair.');
  if (!version.publicKey) throw internalFailure('The public key of this wrapped version is missing.');
  return { ...wrappedKeyOf(version), spec, publicKeyDer: version.publicKey };
}

/**
 * Erased meanwhile: a material expiry or key deletion committed after this node read the key
 * as usable (its cached state not yet invalidated). Found by the multi-node soak as a 500; a
 * retry answers the key's new state.
 */
const materialErasedMeanwhile = () => unavailable('The key material of this version was just erased (material expiry or key deletion); retry.');

/** A wrapped version's key as the HSM port takes it. */
export function wrappedKeyOf(version: KeyVersion): WrappedVersionKey {
  if (!version.wrappedMaterial) throw materialErasedMeanwhile();
  return { versionId: version.id, wrapped: version.wrappedMaterial };
}

/** A sealed version's material, unsealed from the root key into the SOFTWARE cache (zeroed on eviction). */
export function softwareMaterial(deps: ServiceDeps, version: KeyVersion): Promise<Buffer> {
  if (version.storage !== 'sealed') throw internalFailure(`A ${version.storage} version has no sealed material.`);
  return deps.software.material(version.id, async () => {
    if (!version.sealedMaterial) throw materialErasedMeanwhile();
    return deps.hsm.unsealWithRootKey(version.sealedMaterial, Buffer.from(version.id));
  });
}
