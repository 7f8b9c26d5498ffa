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
import { releaseVersionMaterial } from './version-material.js';

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
  const { key, versions, erased } = await withTransaction(deps.db, async (tx) => {
    const current = await loadKey(deps, tx, input.keyId, caller, { forUpdate: true });
    assertImportAction('DeleteKeyMaterial', current);
    const state = stateAfter('DeleteKeyMaterial', { state: current.state, hasMaterial: true });
    const key = (await updateKey(tx, current.id, { state })) ?? current;
    const { items: versions } = await listVersions(tx, key.id);
    return { key, versions, erased: await removeKeyMaterial(tx, key, versions, 'DeleteKeyMaterial', caller) };
  });
  await releaseAfterCommit(deps, key.id, versions);
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
    const erased = await removeKeyMaterial(tx, key, [version], 'ExpireKeyMaterial', systemCaller, {
      materialExpireTime: expectedExpireAt.toISOString(),
    });
    return { outcome: 'expired' as const, version, erased };
  });
  if (result.outcome === 'expired') {
    await releaseAfterCommit(deps, keyId, [result.version]);
    forgetCached(deps, result.erased);
  }
  return result.outcome;
}

/**
 * The one way material goes away, in the caller's transaction (which holds the key's row
 * lock and has already moved its state): the given versions lose their material and its
 * expiry (the fingerprint stays: seed 000's binding), and sealed and wrapped blobs are erased
 * with the rows. Token objects are destroyed after the commit (releaseAfterCommit), never
 * before it: a process killed between a destroy and its commit left the key Enabled with its
 * material gone for good (found by a multi-process probe). Returns the ids of the versions
 * whose material was removed.
 */
async function removeKeyMaterial(
  tx: Queryable,
  key: Key,
  versions: readonly KeyVersion[],
  event: Extract<KeyEvent, 'DeleteKeyMaterial' | 'ExpireKeyMaterial'>,
  caller: Caller,
  extra: Record<string, unknown> = {},
): Promise<string[]> {
  const erased = versions.filter((v) => v.hasMaterial || v.sealedMaterial !== null || v.wrappedMaterial !== null).map((v) => v.id);
  for (const v of versions) {
    if (v.hasMaterial || v.sealedMaterial !== null || v.wrappedMaterial !== null || v.materialExpireAt !== null) {
      // Sealed and wrapped blobs go with the update: nothing of the material is left in Postgres.
      await updateVersionMaterial(tx, v.id, { hasMaterial: false, sealedMaterial: null, wrappedMaterial: null, materialExpireAt: null });
    }
  }
  await recordAudit(tx, {
    requestId: caller.requestId,
    accessKeyId: caller.accessKeyId,
    sourceIp: caller.sourceIp,
    action: event,
    keyId: key.id,
    detail: { versionIds: erased, state: key.state, ...extra },
  });
  return erased;
}

/**
 * After the commit that removed the versions' material: their token objects are destroyed (token
 * versions without material too: an object left by an import that crashed before its commit
 * must not survive a deletion), and this process's unwrapped or unsealed copies dropped
 * (version-material.ts). This runs in a second transaction holding the key's row lock, as an
 * import does while it replaces a version's object: a re-import that committed in between has
 * given its version material again, and its new object is left alone. A destroy that fails — or
 * never runs, the process killed first — leaves an object no committed version names, which
 * the reconciler destroys (README, Operations); no call can use it meanwhile, since no version
 * has material there.
 */
async function releaseAfterCommit(deps: ServiceDeps, keyId: string, versions: readonly KeyVersion[]): Promise<void> {
  try {
    await withTransaction(
      deps.db,
      async (tx) => {
        if (!(await getKey(tx, keyId, { forUpdate: true }))) return;
        for (const version of versions) {
          if ((await getVersion(tx, version.id))?.hasMaterial) continue;
          await releaseVersionMaterial(deps, version);
        }
      },
      // Not re-run on a conflict: it destroys token objects (the reconciler finishes the job).
      { rerunOnConflict: false },
    );
  } catch (error) {
    deps.logger.warn({ keyId, err: error }, 'material deleted; its token objects are left for the reconciler');
  }
}

/**
 * After the commit: drop (and zero) the SOFTWARE cache's material and destroy the unwrapped
 * HsmEncryptedDatabase session objects of the versions just erased (a request racing the
 * deletion may have cached them again).
 */
function forgetCached(deps: ServiceDeps, versionIds: string[]): void {
  for (const id of versionIds) {
    deps.software.forget(id);
    deps.hsm.forgetWrappedKey(id);
  }
}
