/**
 * Key rotation (seed 002): UpdateRotationPolicy, CreateKeyVersion (manual rotation) and the
 * automatic rotation the workers run (`rotateKeyIfDue`). Both kinds of rotation go through
 * one function, `rotateLockedKey`, in a transaction that holds the key's row lock:
 * - a new version with new material (or, for a SOFTWARE BYOK key, the version imported with
 *   ImportType=NEW_KEY_MATERIAL) becomes primary at once, so Encrypt uses it and Decrypt
 *   keeps using the version each ciphertext names; versions are never deleted;
 * - every new version goes through `insertVersionWithinQuota` (one quota unit per version);
 * - `LastRotationDate` = now and `NextRotationDate` = now + interval while automatic rotation
 *   is on (seed 002: "次のローテーション時間 = 最後のローテーション時間 + ローテーション期間";
 *   a manual rotation in between resets it);
 * - the key row changes only if its NextRotationDate is still the one read (conditional
 *   update), so one due date never makes two versions.
 */
import { KmsError, stateModifiedFailed, unsupportedOperation } from '../domain/errors.js';
import { newVersionId } from '../domain/ids.js';
import {
  type Key,
  type ManualRotationRule,
  assertAllowed,
  automaticRotationInterval,
  manualRotation,
  materialLength,
  rotationRule,
} from '../domain/key.js';
import { type KeyVersion, versionStorageOf } from '../domain/key-version.js';
import { nextRotationDate } from '../domain/rotation.js';
import { recordAudit } from '../store/audit.js';
import { type Queryable, withTransaction } from '../store/db.js';
import { type KeyChanges, getKey, updateKey, updateKeyRotation } from '../store/keys.js';
import { insertVersionWithinQuota } from '../store/quota.js';
import { getPendingVersion, updateVersionState } from '../store/versions.js';
import { versionKeySpec } from '../hsm/hsm.js';
import { type Caller, type ServiceDeps, systemCaller } from './context.js';
import { loadKey } from './key-lookup.js';
import { sealNewMaterial } from './keys.js';
import { assertAdmin } from './permissions.js';
import { scheduleNextRotation } from './rotation-schedule.js';
import { newVersionMaterial } from './version-material.js';
import { type VersionKeyAhead, commitWithVersionKeyAhead } from './version-key-ahead.js';

export { listKeysDueForRotation } from '../store/keys.js';

export interface RotationPolicyInput {
  enable: boolean;
  /** Parsed `RotationInterval` (7–365 days, checked at the edge); required to enable, except on default keys. */
  intervalSeconds?: number | undefined;
}

/**
 * UpdateRotationPolicy. Enabling sets NextRotationDate = LastRotationDate + interval (a date
 * already past rotates at once, through the job); disabling clears it and any recorded
 * rotation failure. Only Enabled keys (§5.4; the CRYPTO row of the state matrix).
 * @throws Rejected.UnsupportedOperation (keys that never rotate automatically, domain/key.ts),
 *   InvalidParameter(RotationInterval) (missing, or not 365 days on a default key),
 *   Rejected.<State> (409), Forbidden.KeyNotFound / AliasNotFound (404), Forbidden.NoPermission
 */
export async function updateRotationPolicy(deps: ServiceDeps, reference: string, input: RotationPolicyInput, caller: Caller): Promise<Key> {
  assertAdmin(caller);
  const key = await withTransaction(deps.db, async (tx) => {
    const current = await loadKey(deps, tx, reference, caller, { forUpdate: true });
    // The key's kind first: its answer does not change with the key's state.
    const interval = input.enable ? automaticRotationInterval(current, input.intervalSeconds) : null;
    assertAllowed('UpdateRotationPolicy', current.state);
    let changes: KeyChanges;
    if (interval === null) {
      changes = { automaticRotation: 'Disabled', rotationIntervalSeconds: null, nextRotationDate: null, rotationFailure: null };
    } else {
      const next = nextRotationDate(current.lastRotationDate ?? current.createdAt, interval);
      const moved = current.nextRotationDate?.getTime() !== next.getTime();
      changes = {
        automaticRotation: 'Enabled',
        rotationIntervalSeconds: interval,
        nextRotationDate: next,
        // A failure recorded for the old due date says nothing about the new one.
        ...(moved ? { rotationFailure: null } : {}),
      };
    }
    const updated = await updateKey(tx, current.id, changes, current.state);
    if (!updated) throw stateModifiedFailed();
    await recordAudit(tx, {
      requestId: caller.requestId,
      accessKeyId: caller.accessKeyId,
      sourceIp: caller.sourceIp,
      action: 'UpdateRotationPolicy',
      keyId: current.id,
      detail: {
        automaticRotation: updated.automaticRotation,
        rotationIntervalSeconds: updated.rotationIntervalSeconds,
        nextRotationDate: updated.nextRotationDate?.toISOString() ?? null,
      },
    });
    return updated;
  });
  await scheduleNextRotation(deps, key);
  return key;
}

/**
 * CreateKeyVersion (seed 002, manual rotation): a KMS-generated key gets a new version with
 * new material; a SOFTWARE BYOK key has its PendingRotation version (ImportKeyMaterial with
 * ImportType=NEW_KEY_MATERIAL) rotated in. Either way the version is primary at once and
 * LastRotationDate is now.
 * @throws Rejected.UnsupportedOperation (keys without manual rotation; a BYOK key without
 *   new material waiting), Rejected.LimitExceeded (instance quota: nothing changes),
 *   Rejected.<State> (409), Forbidden.KeyNotFound / AliasNotFound (404), Forbidden.NoPermission
 */
export async function createKeyVersion(deps: ServiceDeps, reference: string, caller: Caller): Promise<KeyVersion> {
  assertAdmin(caller);
  // The token object, when the key will get one, is made before the transaction (issue 19).
  const foreseen = await loadKey(deps, deps.db, reference, caller).catch(() => undefined);
  if (foreseen) {
    // Refused as the transaction would refuse it, before any HSM work: a key pending deletion
    // gets its 409, not a token object made for nothing (and a 503 if the token is busy).
    manualRotation(foreseen);
    assertAllowed('CreateKeyVersion', foreseen.state);
  }
  const ahead = foreseen && willGenerateTokenVersion(foreseen, () => manualRotation(foreseen) === 'new-version') ? aheadFor(foreseen) : undefined;
  const { key, version } = await commitWithVersionKeyAhead(deps, ahead, async () => {
    const rotated = await withTransaction(
      deps.db,
      async (tx) => {
        const current = await loadKey(deps, tx, reference, caller, { forUpdate: true });
        const how = manualRotation(current);
        assertAllowed('CreateKeyVersion', current.state);
        return rotateLockedKey(deps, tx, current, how, caller, 'CreateKeyVersion', ahead);
      },
      // Not re-run on a conflict: the attempt may create an HSM object.
      { rerunOnConflict: false },
    );
    return { result: rotated, usedAhead: rotated.version.id === ahead?.versionId };
  });
  await scheduleNextRotation(deps, key);
  return version;
}

/** What `rotateKeyIfDue` did; the workers log it and never retry anything but a thrown error. */
export type RotationOutcome = 'rotated' | 'not-due' | 'stale' | 'suspended' | 'refused';

/**
 * Automatic rotation of one key for one due date (the jobs' and the sweeper's use case). In
 * one transaction with the key row locked:
 * - `stale`: the key is gone, rotation is off, or NextRotationDate is no longer
 *   `expectedDueAt` (already rotated for it, or the policy moved the date);
 * - `suspended`: the key is Disabled or PendingDeletion (seed 002: rotation pauses; the job
 *   EnableKey / CancelKeyDeletion schedules rotates once at re-enable);
 * - `not-due`: `expectedDueAt` is after the clock's now (a job that fired early);
 * - `rotated`: a new version is primary; the next job is scheduled;
 * - `refused`: a client error such as Rejected.LimitExceeded. Nothing changed but the key's
 *   `rotation_failure` (shown as DescribeKey `RotationFailure`); NextRotationDate stays, so
 *   the sweeper tries again. Never thrown.
 * Other errors (store or HSM unavailable) are thrown for the worker to retry.
 */
export async function rotateKeyIfDue(deps: ServiceDeps, keyId: string, expectedDueAt: Date): Promise<RotationOutcome> {
  let rotated: Key;
  // The token object, when the key is due for a new one, is made before the transaction (issue 19).
  const foreseen = await getKey(deps.db, keyId).catch(() => undefined);
  const ahead =
    foreseen &&
    foreseen.state === 'Enabled' &&
    foreseen.automaticRotation === 'Enabled' &&
    foreseen.nextRotationDate?.getTime() === expectedDueAt.getTime() &&
    expectedDueAt.getTime() <= deps.clock.now().getTime() &&
    willGenerateTokenVersion(foreseen, () => rotationRule(foreseen).automatic !== 'no')
      ? aheadFor(foreseen)
      : undefined;
  try {
    const result = await commitWithVersionKeyAhead(deps, ahead, async () => {
      const outcome = await withTransaction(
        deps.db,
        async (tx): Promise<{ outcome: Exclude<RotationOutcome, 'refused'>; key?: Key; versionId?: string }> => {
          const key = await getKey(tx, keyId, { forUpdate: true });
          if (!key || key.automaticRotation === 'Disabled' || key.nextRotationDate?.getTime() !== expectedDueAt.getTime()) {
            return { outcome: 'stale' };
          }
          if (key.automaticRotation === 'Suspended' || key.state !== 'Enabled') return { outcome: 'suspended' };
          if (expectedDueAt.getTime() > deps.clock.now().getTime()) return { outcome: 'not-due' };
          const rule = rotationRule(key);
          if (rule.automatic === 'no') throw unsupportedOperation(`Automatic rotation is not available for this key. ${rule.why}`);
          const done = await rotateLockedKey(deps, tx, key, 'new-version', systemCaller, 'AutomaticRotation', ahead);
          return { outcome: 'rotated', key: done.key, versionId: done.version.id };
        },
        { rerunOnConflict: false },
      );
      return { result: outcome, usedAhead: ahead !== undefined && outcome.versionId === ahead.versionId };
    });
    if (result.outcome !== 'rotated' || !result.key) return result.outcome;
    rotated = result.key;
  } catch (error) {
    if (!(error instanceof KmsError) || error.kind !== 'client') throw error;
    await recordRotationFailure(deps, keyId, expectedDueAt, error);
    return 'refused';
  }
  await scheduleNextRotation(deps, rotated);
  return 'rotated';
}

/**
 * The one rotation, in the caller's transaction (which holds the key's row lock and checked
 * policy and state). The HSM object is generated last before the commit (as in CreateKey): a
 * refusal rolls back with nothing in the token, and a failed commit leaves only an orphan
 * object for the reconciler.
 * @throws Rejected.LimitExceeded, Rejected.UnsupportedOperation (no PendingRotation version
 *   to promote, or one without material), Rejected.StateModifiedFailed (the due date moved)
 */
async function rotateLockedKey(
  deps: ServiceDeps,
  tx: Queryable,
  key: Key,
  how: Exclude<ManualRotationRule, 'no'>,
  caller: Caller,
  trigger: 'CreateKeyVersion' | 'AutomaticRotation',
  ahead?: VersionKeyAhead,
): Promise<{ key: Key; version: KeyVersion }> {
  const now = deps.clock.now();
  let version: KeyVersion;
  let generateInToken = false;
  if (how === 'import-new-material') {
    version = await promotePendingVersion(tx, key.id);
  } else {
    const storage = versionStorageOf(key);
    // HsmInternal: the token object made ahead of the transaction (its id is the version's);
    // HsmEncryptedDatabase and SOFTWARE: material in the row.
    const versionId = storage === 'token' && ahead ? ahead.versionId : newVersionId();
    const material = await newVersionMaterial(deps, versionId, storage, versionKeySpec(key), (id) => sealNewMaterial(deps, id, materialLength(key.keySpec)));
    version = await insertVersionWithinQuota(tx, {
      id: versionId,
      keyId: key.id,
      instanceId: key.instanceId,
      state: 'Enabled',
      storage,
      ...material,
      hasMaterial: true,
      materialFingerprint: null,
      materialExpireAt: null,
      createdAt: now,
    });
    // A backstop for a token key not foreseen ahead: made last before the commit.
    generateInToken = storage === 'token' && ahead?.versionId !== versionId;
  }
  const interval = key.automaticRotation === 'Disabled' ? null : key.rotationIntervalSeconds;
  const updated = await updateKeyRotation(
    tx,
    key.id,
    { primaryVersionId: version.id, lastRotationDate: now, nextRotationDate: interval ? nextRotationDate(now, interval) : null },
    key.nextRotationDate,
  );
  if (!updated) throw stateModifiedFailed();
  await recordAudit(tx, {
    requestId: caller.requestId,
    accessKeyId: caller.accessKeyId,
    sourceIp: caller.sourceIp,
    action: trigger,
    keyId: key.id,
    keyVersionId: version.id,
    detail: {
      outcome: 'rotated',
      versionId: version.id,
      ordinal: version.ordinal,
      previousVersionId: key.primaryVersionId,
      how,
      dueAt: key.nextRotationDate?.toISOString() ?? null,
      nextRotationDate: updated.nextRotationDate?.toISOString() ?? null,
    },
  });
  // Only symmetric keys rotate (the key policy's who-may-rotate table), so this is an AES key.
  if (generateInToken) await deps.hsm.generateVersionKey(version.id, versionKeySpec(key));
  return { key: updated, version };
}

/** Whether a rotation of `key` (as read before its transaction) makes a new token object. */
function willGenerateTokenVersion(key: Key, makesNewVersion: () => boolean): boolean {
  if (versionStorageOf(key) !== 'token') return false;
  try {
    return makesNewVersion();
  } catch {
    return false;
  }
}

const aheadFor = (key: Key): VersionKeyAhead => ({ versionId: newVersionId(), spec: versionKeySpec(key) });

/**
 * Seed 002, BYOK: "ローテーション保留中" → rotated in. The version keeps its creation date
 * (the import) and its quota unit (taken at the import).
 */
async function promotePendingVersion(tx: Queryable, keyId: string): Promise<KeyVersion> {
  const pending = await getPendingVersion(tx, keyId);
  if (!pending) {
    throw unsupportedOperation(
      'No new key material is waiting to be rotated in. Import it first: ImportKeyMaterial with ImportType=NEW_KEY_MATERIAL.',
    );
  }
  if (!pending.hasMaterial) {
    throw unsupportedOperation(
      'The material of the key version pending rotation has expired or was deleted. Import the same material again (ImportType=EXISTING_KEY_MATERIAL) first.',
    );
  }
  if (!(await updateVersionState(tx, pending.id, 'PendingRotation', 'Enabled'))) throw stateModifiedFailed();
  return { ...pending, state: 'Enabled' };
}

/** Longest RotationFailure text kept: a reason, not a log. */
const MAX_FAILURE_LENGTH = 300;

/**
 * Records why the rotation due at `dueAt` was refused, only if that is still the key's due
 * date (a rotation or a policy change since then makes the failure moot).
 */
async function recordRotationFailure(deps: ServiceDeps, keyId: string, dueAt: Date, error: KmsError): Promise<void> {
  const reason = `${error.code}: ${error.message}`.slice(0, MAX_FAILURE_LENGTH);
  const recorded = await withTransaction(deps.db, async (tx) => {
    const key = await getKey(tx, keyId, { forUpdate: true });
    if (!key || key.nextRotationDate?.getTime() !== dueAt.getTime()) return false;
    await updateKey(tx, keyId, { rotationFailure: reason });
    await recordAudit(tx, {
      accessKeyId: systemCaller.accessKeyId,
      action: 'AutomaticRotation',
      keyId,
      resultCode: error.code,
      detail: { outcome: 'refused', code: error.code, dueAt: dueAt.toISOString() },
    });
    return true;
  });
  if (recorded) deps.logger.warn({ keyId, dueAt: dueAt.toISOString(), code: error.code }, 'automatic rotation refused; the sweeper retries it');
}
