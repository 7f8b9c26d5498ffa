/**
 * Key deletion at DeleteDate (ScheduleKeyDeletion, alibaba-api.md §3.1/§5.5): the key-deletion
 * job, and the sweeper for anything a lost job missed, call `deleteKeyIfDue`. Afterwards the
 * key is gone (Forbidden.KeyNotFound, also for its old ciphertexts: their version id names
 * nothing), its aliases and tags with it, and its versions' quota units are back.
 *
 * Crash order (DESIGN.md, Crash consistency). Everything happens in one transaction that holds
 * the key's row lock, and the rows are the last thing to go:
 *   1. lock the key row and re-check it: still PendingDeletion, still this DeleteDate, due by
 *      the service clock (else 'stale' / 'not-due': a cancelled, re-scheduled or already
 *      deleted key is left alone);
 *   2. destroy the HSM objects: every `token` version's secret key (CKA_ID = version id) and
 *      the private half of every wrapping pair issued for the key. Destroying an object that
 *      is already gone is a no-op, so this step can be repeated any number of times;
 *   3. delete the rows: wrapping pairs and import tokens, the versions (their sealed blobs go
 *      with them) and the key through store/quota.ts `deleteKeyWithVersions` (the instance
 *      lock every quota count takes); aliases and tags cascade; one audit event; commit.
 * A crash (or an HSM or database failure) anywhere before the commit rolls the rows back: the
 * key is still PendingDeletion with the same DeleteDate, so the retried job or the next sweep
 * runs the same steps again, finds the destroyed objects already gone and finishes. A crash
 * after the commit leaves nothing to do ('stale'). Meanwhile the key cannot come back
 * half-destroyed: CancelKeyDeletion waits for the row lock, and once the DeleteDate has
 * passed it is refused (domain/key-deletion.ts `assertDeletionCancellable`); Encrypt and
 * Decrypt are already refused in PendingDeletion. An object that escapes all this (a pair
 * issued by a racing request) has no row left and is the reconciler's orphan.
 */
import { type KeyDeletionOutcome, keyDeletionDue } from '../domain/key-deletion.js';
import { recordAudit } from '../store/audit.js';
import { withTransaction } from '../store/db.js';
import { listWrappingKeyIdsOfKey } from '../store/key-deletion.js';
import { getKey } from '../store/keys.js';
import { deleteKeyWithVersions } from '../store/quota.js';
import { listVersions } from '../store/versions.js';
import { type ServiceDeps, systemCaller } from './context.js';
import { releaseVersionMaterial } from './version-material.js';

export type { KeyDeletionOutcome };

/**
 * Deletes the key if it is still PendingDeletion with DeleteDate `expectedDeleteAt` and that
 * date has come by `deps.clock`. Idempotent and safe to run from any number of workers.
 */
export async function deleteKeyIfDue(deps: ServiceDeps, keyId: string, expectedDeleteAt: Date): Promise<KeyDeletionOutcome> {
  const now = deps.clock.now();
  const result = await withTransaction(
    deps.db,
    async (tx) => {
      const key = await getKey(tx, keyId, { forUpdate: true });
      if (!key) return { outcome: 'stale' as const, versionIds: [] };
      const due = keyDeletionDue(key, expectedDeleteAt, now);
      if (due !== 'due') return { outcome: due, versionIds: [] };
      const { items: versions } = await listVersions(tx, key.id);
      const wrappingKeyIds = await listWrappingKeyIdsOfKey(tx, key.id);

      // Step 2: the HSM objects, while the rows that name them still exist.
      // Token objects destroyed; unwrapped/unsealed copies dropped (wrapped blobs go with the rows).
      for (const version of versions) await releaseVersionMaterial(deps, version);
      for (const wrappingKeyId of wrappingKeyIds) await deps.hsm.destroyWrappingKeyPair(wrappingKeyId);

      // Step 3: the rows, in this transaction (import tokens cascade from their pairs).
      await tx.query('DELETE FROM wrapping_keys WHERE key_id = $1', [key.id]);
      await deleteKeyWithVersions(tx, key);
      await recordAudit(tx, {
        accessKeyId: systemCaller.accessKeyId,
        action: 'DeleteKey',
        keyId: key.id,
        detail: { deleteDate: expectedDeleteAt.toISOString(), versionIds: versions.map((v) => v.id), wrappingKeyIds },
      });
      return { outcome: 'deleted' as const, versionIds: versions.map((v) => v.id) };
    },
    // Not re-run on a conflict: the job (or the next sweep) retries the whole, idempotent run.
    { rerunOnConflict: false },
  );
  // SOFTWARE tier: this process's cached material of the deleted versions goes too.
  for (const versionId of result.versionIds) {
    deps.software.forget(versionId);
    deps.hsm.forgetWrappedKey(versionId);
  }
  return result.outcome;
}
