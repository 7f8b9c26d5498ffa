import { timingSafeEqual } from 'node:crypto';
import {
  allowedWrappingAlgorithms,
  assertBoundMaterial,
  assertImportAction,
  assertWrappingAlgorithmAllowed,
  decodeEncryptedKeyMaterial,
  keyManagementType,
  materialExpiry,
} from '../domain/byok.js';
import { KmsError, internalFailure, invalidImportToken } from '../domain/errors.js';
import { type ImportTokenPayload, assertTokenUsable, decodeImportToken } from '../domain/import-token.js';
import { materialLength, stateAfter } from '../domain/key.js';
import type { Hsm, ImportUnwrapRequest, UnwrapPath } from '../hsm/hsm.js';
import { recordAudit } from '../store/audit.js';
import { type Queryable, withTransaction } from '../store/db.js';
import { type Key, getKey, updateKey } from '../store/keys.js';
import { type KeyVersion, findVersionByFingerprint, getVersion, updateVersionMaterial } from '../store/versions.js';
import { getIssuedWrappingKey } from '../store/wrapping-keys.js';
import { scheduleBestEffort } from './jobs-port.js';
import { assertAdmin } from './permissions.js';
import type { Caller, ServiceDeps } from './context.js';
import { assertHsmCanUnwrap } from './import-params.js';
import { loadKey } from './key-lookup.js';

export interface ImportKeyMaterialInput {
  keyId: string;
  /** base64 of the material encrypted with the downloaded public key (seed 000, step 3). */
  encryptedKeyMaterial: string;
  importToken: string;
  /** Unix seconds; 0 or absent: never expires. */
  keyMaterialExpireUnix?: number | undefined;
}

export interface ImportOutcome {
  key: Key;
  versionId: string;
  path: UnwrapPath;
  /** True for the import that bound the version to its material (seed 000). */
  firstImport: boolean;
  /** The version's new MaterialExpireTime; null: never. */
  materialExpireAt: Date | null;
}

/**
 * ImportKeyMaterial (seed 000, step 4). The material is unwrapped inside the HSM with the
 * private half of the token's wrapping pair:
 * - HSM tier: straight into a sensitive, non-extractable token object whose CKA_ID is the
 *   version id (if that object already exists, as in a re-import while Enabled, only a
 *   transient object is made, to fingerprint the candidate, and the existing one is kept);
 * - SOFTWARE tier and default keys: unwrapped in the HSM, returned once to be sealed under
 *   the root key, then zeroed.
 * The key is bound forever to its first material: later imports must carry the same
 * material (same in-HSM fingerprint) or change nothing. Success moves PendingImport →
 * Enabled and sets (or resets) MaterialExpireTime. Imports into one key are serialised by
 * a row lock on it.
 * @throws InvalidKeyMaterial — one code and message for every bad ciphertext (padding,
 *   length, another download's key, tampering) and for different material, so no answer
 *   tells a forged ciphertext's padding was right; InvalidImportToken (malformed, forged,
 *   for another key); ExpiredImportToken; InvalidParameter(KeyMaterialExpireUnix);
 *   Unsupported.Origin; Rejected.PendingDeletion; Rejected.UnsupportedOperation (strict
 *   mode turned on after the token was issued); Forbidden.KeyNotFound
 */
export async function importKeyMaterial(deps: ServiceDeps, input: ImportKeyMaterialInput, caller: Caller): Promise<ImportOutcome> {
  assertAdmin(caller);
  const token = await verifyImportToken(deps.hsm, input.importToken);
  const now = deps.clock.now();
  const materialExpireAt = materialExpiry(input.keyMaterialExpireUnix, now);
  const encryptedMaterial = decodeEncryptedKeyMaterial(input.encryptedKeyMaterial);

  const attempt: { keyId?: string; path?: UnwrapPath; createdObject?: string } = {};
  let outcome: ImportOutcome;
  try {
    outcome = await withTransaction(deps.db, async (tx) => {
      const key = await loadKey(deps, tx, input.keyId, caller, { forUpdate: true });
      attempt.keyId = key.id;
      assertImportAction('ImportKeyMaterial', key);
      assertTokenUsable(token, { keyId: key.id, now });
      // The token is self-contained, but its pair must still exist, issued for this key with
      // this algorithm (defence in depth against a leaked MAC key, and a clear end once the
      // cleanup job destroyed the pair).
      const wrappingKey = await getIssuedWrappingKey(tx, token.wrappingKeyId, key.id);
      if (!wrappingKey || wrappingKey.algorithm !== token.algorithm) throw invalidImportToken();
      const type = keyManagementType(key);
      assertWrappingAlgorithmAllowed(type, token.algorithm);
      assertHsmCanUnwrap(deps.hsm, deps.config.hsm.importStrict, token.algorithm, allowedWrappingAlgorithms(type));

      const primary = await getVersion(tx, key.primaryVersionId);
      if (!primary) throw internalFailure('The primary version of the key is missing.');
      const target = unwrapTarget(primary);
      // A token object of a version without committed material can only be the leftover of
      // an import that crashed before its commit (DESIGN.md, crash consistency): it goes.
      if (target.kind === 'token') await deps.hsm.destroyVersionKey(primary.id);
      const request: ImportUnwrapRequest = {
        wrappingKeyId: wrappingKey.id,
        algorithm: token.algorithm,
        encryptedMaterial,
        materialLength: materialLength(key.keySpec),
        target,
      };
      const unwrapped = await deps.hsm.unwrapImportedMaterial(request);
      attempt.path = unwrapped.path;
      if (target.kind === 'token') attempt.createdObject = primary.id;

      let version: KeyVersion;
      let sealedMaterial: Buffer | undefined;
      try {
        version = await versionForMaterial(tx, key, primary, unwrapped.fingerprint);
        sealedMaterial = unwrapped.material ? await deps.hsm.sealWithRootKey(unwrapped.material, Buffer.from(version.id)) : undefined;
      } finally {
        unwrapped.material?.fill(0);
      }
      const firstImport = version.materialFingerprint === null;
      await updateVersionMaterial(tx, version.id, {
        hasMaterial: true,
        ...(sealedMaterial && !version.hasMaterial ? { sealedMaterial } : {}),
        materialFingerprint: version.materialFingerprint ?? unwrapped.fingerprint,
        materialExpireAt,
      });
      // The key's state follows its primary version: reviving an older version's material
      // makes its ciphertexts decrypt again but does not make the key usable for Encrypt.
      const isPrimary = version.id === primary.id;
      const updated = isPrimary
        ? await updateKey(tx, key.id, { state: stateAfter('ImportKeyMaterial', { state: key.state, hasMaterial: primary.hasMaterial }) })
        : await getKey(tx, key.id);
      if (!updated) throw internalFailure('The key changed under its row lock.');
      await recordAudit(tx, {
        requestId: caller.requestId,
        accessKeyId: caller.accessKeyId,
        action: 'ImportKeyMaterial',
        keyId: key.id,
        detail: {
          outcome: 'imported',
          versionId: version.id,
          ordinal: version.ordinal,
          wrappingKeyId: wrappingKey.id,
          wrappingAlgorithm: token.algorithm,
          path: unwrapped.path,
          target: target.kind,
          firstImport,
          materialExpireTime: materialExpireAt?.toISOString() ?? null,
        },
      });
      return { key: updated, versionId: version.id, path: unwrapped.path, firstImport, materialExpireAt };
      // Not re-run on a conflict: the attempt creates and destroys token objects.
    }, { rerunOnConflict: false });
  } catch (error) {
    // Whatever failed, an object this attempt put in the token must not outlive it.
    if (attempt.createdObject) await deps.hsm.destroyVersionKey(attempt.createdObject).catch(() => undefined);
    await auditRefusal(deps, caller, attempt, error);
    throw error;
  }

  if (outcome.materialExpireAt) {
    const expireAt = outcome.materialExpireAt;
    await scheduleBestEffort(deps, 'material-expiry', () => deps.jobs.scheduleMaterialExpiry(outcome.key.id, outcome.versionId, expireAt));
  }
  return outcome;
}

/**
 * Decodes the token and checks its MAC inside the HSM, in constant time, before anything in
 * it is trusted.
 * @throws InvalidImportToken
 */
export async function verifyImportToken(hsm: Hsm, importToken: string): Promise<ImportTokenPayload> {
  const decoded = decodeImportToken(importToken.trim());
  const expected = await hsm.macWithTokenKey(decoded.signedBytes);
  if (expected.length !== decoded.mac.length || !timingSafeEqual(expected, decoded.mac)) throw invalidImportToken();
  return decoded.payload;
}

/**
 * The version imported material belongs to (seed 000's binding, per version): the version
 * already bound to this fingerprint (a re-import, also of expired or deleted material, which
 * revives that version and its ciphertexts); otherwise the primary version if it was never
 * bound (the first import). Any other material is refused: a version is bound forever to
 * its first material. HSM-tier BYOK keys have one version only (they never rotate), so the
 * primary version is the one their token object is unwrapped for.
 * @throws InvalidKeyMaterial
 */
async function versionForMaterial(tx: Queryable, key: Key, primary: KeyVersion, fingerprint: Buffer): Promise<KeyVersion> {
  const bound = await findVersionByFingerprint(tx, key.id, fingerprint);
  if (bound) {
    assertBoundMaterial(bound.materialFingerprint, fingerprint);
    return bound;
  }
  assertBoundMaterial(primary.materialFingerprint, fingerprint);
  return primary;
}

/** Where the unwrapped material goes, decided by committed state (never by a per-process handle cache). */
function unwrapTarget(version: KeyVersion): ImportUnwrapRequest['target'] {
  // Material already there (re-import while Enabled or Disabled): only fingerprint the candidate.
  if (version.hasMaterial) return { kind: 'fingerprint-only' };
  return version.storage === 'token' ? { kind: 'token', versionId: version.id } : { kind: 'host' };
}

/**
 * Records a refused import for the operator (the client sees only the uniform error). The
 * reason distinguishes a ciphertext that did not unwrap from material that unwrapped but is
 * not the bound one; it never holds material.
 */
async function auditRefusal(
  deps: ServiceDeps,
  caller: Caller,
  attempt: { keyId?: string; path?: UnwrapPath },
  error: unknown,
): Promise<void> {
  if (!(error instanceof KmsError) || error.kind !== 'client' || !attempt.keyId) return;
  const reason =
    error.code === 'InvalidKeyMaterial' ? (attempt.path ? 'material-differs-from-bound-material' : 'unwrap-failed') : error.code;
  await recordAudit(deps.db, {
    requestId: caller.requestId,
    accessKeyId: caller.accessKeyId,
    action: 'ImportKeyMaterial',
    keyId: attempt.keyId,
    detail: { outcome: 'refused', code: error.code, reason, ...(attempt.path ? { path: attempt.path } : {}) },
  }).catch(() => undefined);
}
