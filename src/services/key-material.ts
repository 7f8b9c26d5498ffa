import { assertImportAction, materialExpired } from '../domain/byok.js';
import { type KeyEvent, stateAfter } from '../domain/key.js';
import { recordAudit } from '../store/audit.js';
import type { Queryable } from '../store/db.js';
import { withTransaction } from '../store/db.js';
import { type Key, clearDueMaterialExpiry, getKey, updateKey } from '../store/keys.js';
import { listVersions, updateVersionMaterial } from '../store/versions.js';
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
    const key = (await updateKey(tx, current.id, { state, materialExpireAt: null })) ?? current;
    return { key, erased: await removeKeyMaterial(deps, tx, key, 'DeleteKeyMaterial', caller) };
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
 * Seed 000: "KMS deletes the expired material at the specified time". Applies only if the
 * key's expiry is still `expectedExpireAt` and is due at the clock's now, with a conditional
 * update under the key's row lock: idempotent, so a retried, duplicated or late job, the
 * sweeper and a racing re-import never apply it twice or delete freshly imported material.
 */
export async function expireKeyMaterial(deps: ServiceDeps, keyId: string, expectedExpireAt: Date): Promise<MaterialExpiryOutcome> {
  const now = deps.clock.now();
  const result = await withTransaction(deps.db, async (tx) => {
    const current = await getKey(tx, keyId, { forUpdate: true });
    if (!current || current.materialExpireAt?.getTime() !== expectedExpireAt.getTime()) return { outcome: 'stale' as const };
    if (!materialExpired(current.materialExpireAt, now)) return { outcome: 'not-due' as const };
    const state = stateAfter('ExpireKeyMaterial', { state: current.state, hasMaterial: true });
    const key = await clearDueMaterialExpiry(tx, keyId, expectedExpireAt, now, state);
    if (!key) return { outcome: 'stale' as const };
    const erased = await removeKeyMaterial(deps, tx, key, 'ExpireKeyMaterial', systemCaller, { materialExpireTime: expectedExpireAt.toISOString() });
    return { outcome: 'expired' as const, erased };
    // Not re-run on a conflict: token objects are destroyed inside (removeKeyMaterial); the job retries.
  }, { rerunOnConflict: false });
  if (result.outcome === 'expired') forgetCached(deps, result.erased);
  return result.outcome;
}

/**
 * The one way material goes away, in the caller's transaction (which holds the key's row
 * lock and has already moved its state): every version loses its material, sealed blobs are
 * erased, and token objects are destroyed last, just before the commit, so a failing HSM
 * rolls everything back. Token versions without material are swept too: an object left by
 * an import that crashed before its commit must not survive a deletion.
 * Returns the ids of the versions whose material was removed.
 */
async function removeKeyMaterial(
  deps: ServiceDeps,
  tx: Queryable,
  key: Key,
  event: Extract<KeyEvent, 'DeleteKeyMaterial' | 'ExpireKeyMaterial'>,
  caller: Caller,
  extra: Record<string, unknown> = {},
): Promise<string[]> {
  const { items: versions } = await listVersions(tx, key.id);
  const erased = versions.filter((v) => v.hasMaterial || v.sealedMaterial !== null).map((v) => v.id);
  for (const id of erased) await updateVersionMaterial(tx, id, { hasMaterial: false, sealedMaterial: null });
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
