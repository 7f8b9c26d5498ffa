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
import { KmsError, internalFailure, invalidImportToken, invalidKeyMaterial, pendingRotationExists } from '../domain/errors.js';
import { newVersionId } from '../domain/ids.js';
import { type ImportTokenPayload, assertTokenUsable, decodeImportToken } from '../domain/import-token.js';
import { assertNewMaterialImport, materialLength, stateAfter } from '../domain/key.js';
import type { Hsm, ImportUnwrapRequest, UnwrapPath } from '../hsm/hsm.js';
import { recordAudit } from '../store/audit.js';
import { type Queryable, withTransaction } from '../store/db.js';
import { getKey, updateKey } from '../store/keys.js';
import type { Key } from '../domain/key.js';
import { insertVersionWithinQuota } from '../store/quota.js';
import { findVersionByFingerprint, getPendingVersion, getVersion, updateVersionMaterial } from '../store/versions.js';
import type { KeyVersion } from '../domain/key-version.js';
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
  /** hsm-kms extension (AWS KMS's ImportType): absent = EXISTING_KEY_MATERIAL. */
  importType?: ImportType | undefined;
}

/**
 * `EXISTING_KEY_MATERIAL`: the key's material, first import or a re-import (seed 000).
 * `NEW_KEY_MATERIAL`: new material for a rotation (seed 002, BYOK): a new version in
 * PendingRotation, rotated in by CreateKeyVersion. Modelled on AWS KMS's `ImportType` (2025).
 */
export type ImportType = 'EXISTING_KEY_MATERIAL' | 'NEW_KEY_MATERIAL';
export const IMPORT_TYPES = ['EXISTING_KEY_MATERIAL', 'NEW_KEY_MATERIAL'] as const satisfies readonly [ImportType, ...ImportType[]];

export interface ImportOutcome {
  key: Key;
  versionId: string;
  path: UnwrapPath;
  /** True for the import that bound the version to its material (seed 000). */
  firstImport: boolean;
  /** The version's new MaterialExpireTime; null: never. */
  materialExpireAt: Date | null;
  /** NEW_KEY_MATERIAL: the version was created, in PendingRotation. */
  newVersion: boolean;
}

/**
 * ImportKeyMaterial (seed 000, step 4). The material is unwrapped inside the HSM with the
 * private half of the token's wrapping pair:
 * - HSM tier, HsmInternal: straight into a sensitive, non-extractable token object whose CKA_ID is the
 *   version id (if that object already exists, as in a re-import while Enabled, only a
 *   transient object is made, to fingerprint the candidate, and the existing one is kept);
 * - HSM tier, HsmEncryptedDatabase: into a transient session object that only the trusted
 *   master key may wrap, fingerprinted in the HSM, wrapped under the master (AES-KWP) and
 *   stored in the version row;
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
 *   mode turned on after the token was issued); Forbidden.KeyNotFound.
 *   NEW_KEY_MATERIAL also: Rejected.UnsupportedOperation (every key but SOFTWARE BYOK keys,
 *   domain/key.ts), Rejected.PendingRotation (one is already waiting), Rejected.PendingImport
 *   (the key's first material is not imported yet), Rejected.LimitExceeded (the version's
 *   quota unit), and InvalidKeyMaterial for material some version of the key already has.
 */
export async function importKeyMaterial(deps: ServiceDeps, input: ImportKeyMaterialInput, caller: Caller): Promise<ImportOutcome> {
  assertAdmin(caller);
  const token = await verifyImportToken(deps.hsm, input.importToken);
  const now = deps.clock.now();
  const materialExpireAt = materialExpiry(input.keyMaterialExpireUnix, now);
  const encryptedMaterial = decodeEncryptedKeyMaterial(input.encryptedKeyMaterial);

  const importType = input.importType ?? 'EXISTING_KEY_MATERIAL';
  const attempt: AttemptTrace = {};
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
      if (importType === 'NEW_KEY_MATERIAL') await assertNewMaterialWanted(tx, key, primary);
      // New material goes to a new (sealed) version, never into an existing one.
      const target: ImportUnwrapRequest['target'] = importType === 'NEW_KEY_MATERIAL' ? { kind: 'host' } : unwrapTarget(primary);
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
      let firstImport: boolean;
      try {
        if (importType === 'NEW_KEY_MATERIAL') {
          version = await insertNewMaterialVersion(deps, tx, key, unwrapped, materialExpireAt, now, attempt);
          firstImport = true;
        } else {
          version = await versionForMaterial(tx, key, primary, unwrapped.fingerprint);
          const sealedMaterial = unwrapped.material ? await deps.hsm.sealWithRootKey(unwrapped.material, Buffer.from(version.id)) : undefined;
          firstImport = version.materialFingerprint === null;
          await updateVersionMaterial(tx, version.id, {
            hasMaterial: true,
            ...(sealedMaterial && !version.hasMaterial ? { sealedMaterial } : {}),
            // HsmEncryptedDatabase: the material wrapped under the HSM master key, in the row.
            ...(unwrapped.wrapped && !version.hasMaterial ? { wrappedMaterial: unwrapped.wrapped } : {}),
            materialFingerprint: version.materialFingerprint ?? unwrapped.fingerprint,
            materialExpireAt,
          });
        }
      } finally {
        unwrapped.material?.fill(0);
      }
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
        sourceIp: caller.sourceIp,
        action: 'ImportKeyMaterial',
        keyId: key.id,
        keyVersionId: version.id,
        detail: {
          outcome: 'imported',
          importType,
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
      return { key: updated, versionId: version.id, path: unwrapped.path, firstImport, materialExpireAt, newVersion: importType === 'NEW_KEY_MATERIAL' };
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

/** What a failed import leaves for the cleanup and the operator's audit line. */
interface AttemptTrace {
  keyId?: string;
  path?: UnwrapPath;
  createdObject?: string;
  /** Overrides the audit reason of an InvalidKeyMaterial refusal. */
  reason?: string;
}

/**
 * NEW_KEY_MATERIAL preconditions, checked before anything is unwrapped (seed 002, BYOK
 * rotation): the key policy allows it (SOFTWARE BYOK keys only); the key's first material is
 * in (a rotation replaces material, it does not provide the first); no other new material
 * is waiting ("現在の新しいバージョンがローテーションされるまで、別のキーバージョンをインポートすることはできません").
 * @throws Rejected.UnsupportedOperation, Rejected.PendingImport, Rejected.PendingRotation
 */
async function assertNewMaterialWanted(tx: Queryable, key: Key, primary: KeyVersion): Promise<void> {
  assertNewMaterialImport(key);
  if (primary.materialFingerprint === null) {
    throw new KmsError('Rejected.PendingImport', 'The key has no material yet: import its first material with ImportType=EXISTING_KEY_MATERIAL.');
  }
  if (await getPendingVersion(tx, key.id)) throw pendingRotationExists();
}

/**
 * Seed 002: "新しいキーマテリアルがインポートされると、新しいキーバージョンが生成されます" — a
 * version in PendingRotation with its own sealed material, fingerprint and expiry, taking its
 * quota unit now (insertVersionWithinQuota). Material that some version of the key already
 * has is not new: refused with the uniform InvalidKeyMaterial (no oracle), audited as such.
 * @throws InvalidKeyMaterial, Rejected.LimitExceeded
 */
async function insertNewMaterialVersion(
  deps: ServiceDeps,
  tx: Queryable,
  key: Key,
  unwrapped: { material?: Buffer | undefined; fingerprint: Buffer },
  materialExpireAt: Date | null,
  now: Date,
  attempt: AttemptTrace,
): Promise<KeyVersion> {
  if (await findVersionByFingerprint(tx, key.id, unwrapped.fingerprint)) {
    attempt.reason = 'new-material-already-bound-to-a-version';
    throw invalidKeyMaterial();
  }
  if (!unwrapped.material) throw internalFailure('The unwrapped material did not come back for sealing.');
  const id = newVersionId();
  return insertVersionWithinQuota(tx, {
    id,
    keyId: key.id,
    instanceId: key.instanceId,
    state: 'PendingRotation',
    storage: 'sealed',
    sealedMaterial: await deps.hsm.sealWithRootKey(unwrapped.material, Buffer.from(id)),
    wrappedMaterial: null,
    hasMaterial: true,
    materialFingerprint: unwrapped.fingerprint,
    materialExpireAt,
    createdAt: now,
  });
}

/** Where the unwrapped material goes, decided by committed state (never by a per-process handle cache). */
function unwrapTarget(version: KeyVersion): ImportUnwrapRequest['target'] {
  // Sealed tier: the material comes back to be sealed for whichever version its fingerprint
  // names, which may not be the primary one (seed 002: a rotated key re-imports an older
  // version's expired or deleted material while its primary still has material).
  if (version.storage === 'sealed') return { kind: 'host' };
  // Material already there (re-import while Enabled or Disabled): only fingerprint the candidate.
  if (version.hasMaterial) return { kind: 'fingerprint-only' };
  if (version.storage === 'wrapped') return { kind: 'wrapped', versionId: version.id };
  return version.storage === 'token' ? { kind: 'token', versionId: version.id } : { kind: 'host' };
}

/**
 * Records a refused import for the operator (the client sees only the uniform error). The
 * reason distinguishes a ciphertext that did not unwrap from material that unwrapped but is
 * not the bound one; it never holds material.
 */
async function auditRefusal(deps: ServiceDeps, caller: Caller, attempt: AttemptTrace, error: unknown): Promise<void> {
  if (!(error instanceof KmsError) || error.kind !== 'client' || !attempt.keyId) return;
  const reason =
    error.code === 'InvalidKeyMaterial'
      ? (attempt.reason ?? (attempt.path ? 'material-differs-from-bound-material' : 'unwrap-failed'))
      : error.code;
  await recordAudit(deps.db, {
    requestId: caller.requestId,
    accessKeyId: caller.accessKeyId,
    sourceIp: caller.sourceIp,
    action: 'ImportKeyMaterial',
    keyId: attempt.keyId,
    resultCode: error.code,
    detail: { outcome: 'refused', code: error.code, reason, ...(attempt.path ? { path: attempt.path } : {}) },
  }).catch(() => undefined);
}
