import { assertImportAction, materialExpired } from '../domain/byok.js';
import { type KeyEvent, stateAfter } from '../domain/key.js';
import { recordAudit } from '../store/audit.js';
import type { Queryable } from '../store/db.js';
import { withTransaction } from '../store/db.js';
import { getKey, updateKey } from '../store/keys.js';
import type { Key } from '../domain/key.js';
import { getVersion, listVersions, updateVersionMaterial } from '../store/versions.js';
import type { KeyVersion } from '../domain/key-version.js';
import { type Caller, type ServiceDeps, systemCaller } from './context.js';
import { assertAdmin } from './permissions.js';
import { loadKey } from './key-lookup.js';

/**
 * Deleting imported material (seed 000, FAQ): by hand with DeleteKeyMaterial, or by KMS at
 * the material's expiry. Both go through `removeKeyMaterial`. The key stays; so does its
 * fingerprint ("a key is bound forever to its first material"), so only the same material
 * can be imported again, after which old ciphertexts decrypt again (the versions and their
 * ids are kept).
 */

/**
 * DeleteKeyMaterial: the HSM objects are destroyed / the sealed blobs erased at once, and
 * the key goes to PendingImport; a PendingDeletion key stays PendingDeletion (§5.1).
 * @throws Forbidden.KeyNotFound, Forbidden.NoPermission, Unsupported.Origin (generated
 *   material cannot be deleted: nothing could ever bring it back)
 */
export async function deleteKeyMaterial(deps: ServiceDeps, input: { keyId: string }, caller: Caller): Promise<Key> {
  assertAdmin(caller);
  const { key, erased } = await withTransaction(deps.db, async (tx) => {
    const current = await loadKey(deps, tx, input.keyId, caller, { forUpdate: true });
    assertImportAction('DeleteKeyMaterial', current);
    const state = stateAfter('DeleteKeyMaterial', { state: current.state, hasMaterial: true });
    const key = (await updateKey(tx, current.id, { state })) ?? current;
    const { items: versions } = await listVersions(tx, key.id);
    return { key, erased: await removeKeyMaterial(deps, tx, key, versions, 'DeleteKeyMaterial', caller) };
    // Not re-run on a conflict: token objects are destroyed inside (removeKeyMaterial).
  }, { rerunOnConflict: false });
  forgetCached(deps, erased);
  return key;
}

/** What an expiry run did for one key. */
export type MaterialExpiryOutcome =
  /** The material was deleted and the key moved to PendingImport (or stayed PendingDeletion). */
  | 'expired'
  /** The expiry is still ahead (a job that fired early, or a clock behind the scheduler's). */
  | 'not-due'
  /** Nothing to do: the key is gone, or a re-import or deletion moved or cleared its expiry. */
  | 'stale';

/**
 * Seed 000: "KMS deletes the expired material at the specified time" — per version, since
 * each version has its own material (seed 002). Applies only if the version's expiry is
 * still `expectedExpireAt` and is due at the clock's now, under the key's row lock:
 * idempotent, so a retried, duplicated or late job, the sweeper and a racing re-import never
 * apply it twice or delete freshly imported material. Only when the primary version's
 * material goes does the key leave Enabled (to PendingImport; PendingDeletion stays).
 */
export async function expireKeyMaterial(
  deps: ServiceDeps,
  keyId: string,
  versionId: string,
  expectedExpireAt: Date,
): Promise<MaterialExpiryOutcome> {
  const now = deps.clock.now();
  const result = await withTransaction(deps.db, async (tx) => {
    const current = await getKey(tx, keyId, { forUpdate: true });
    const version = current ? await getVersion(tx, versionId) : undefined;
    if (!current || !version || version.keyId !== current.id) return { outcome: 'stale' as const };
    if (version.materialExpireAt?.getTime() !== expectedExpireAt.getTime()) return { outcome: 'stale' as const };
    if (!materialExpired(version.materialExpireAt, now)) return { outcome: 'not-due' as const };
    const key =
      version.id === current.primaryVersionId
        ? ((await updateKey(tx, keyId, { state: stateAfter('ExpireKeyMaterial', { state: current.state, hasMaterial: true }) })) ?? current)
        : current;
    const erased = await removeKeyMaterial(deps, tx, key, [version], 'ExpireKeyMaterial', systemCaller, {
      materialExpireTime: expectedExpireAt.toISOString(),
    });
    return { outcome: 'expired' as const, erased };
    // Not re-run on a conflict: token objects are destroyed inside (removeKeyMaterial); the job retries.
  }, { rerunOnConflict: false });
  if (result.outcome === 'expired') forgetCached(deps, result.erased);
  return result.outcome;
}

/**
 * The one way material goes away, in the caller's transaction (which holds the key's row
 * lock and has already moved its state): the given versions lose their material and its
 * expiry (the fingerprint stays: seed 000's binding), sealed blobs are erased, and token
 * objects are destroyed last, just before the commit, so a failing HSM rolls everything
 * back. Token versions without material are swept too: an object left by an import that
 * crashed before its commit must not survive a deletion.
 * Returns the ids of the versions whose material was removed.
 */
async function removeKeyMaterial(
  deps: ServiceDeps,
  tx: Queryable,
  key: Key,
  versions: readonly KeyVersion[],
  event: Extract<KeyEvent, 'DeleteKeyMaterial' | 'ExpireKeyMaterial'>,
  caller: Caller,
  extra: Record<string, unknown> = {},
): Promise<string[]> {
  const erased = versions.filter((v) => v.hasMaterial || v.sealedMaterial !== null).map((v) => v.id);
  for (const v of versions) {
    if (v.hasMaterial || v.sealedMaterial !== null || v.materialExpireAt !== null) {
      await updateVersionMaterial(tx, v.id, { hasMaterial: false, sealedMaterial: null, materialExpireAt: null });
    }
  }
  await recordAudit(tx, {
    requestId: caller.requestId,
    accessKeyId: caller.accessKeyId,
    action: event,
    keyId: key.id,
    detail: { versionIds: erased, state: key.state, ...extra },
  });
  for (const version of versions) {
    if (version.storage === 'token') await deps.hsm.destroyVersionKey(version.id);
  }
  return erased;
}

/** SOFTWARE tier: drop (and zero) the cached material of the versions just erased. */
function forgetCached(deps: ServiceDeps, versionIds: string[]): void {
  for (const id of versionIds) deps.software.forget(id);
}
