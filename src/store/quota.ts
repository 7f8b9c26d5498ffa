import { instanceNotFound } from '../domain/errors.js';
import { assertVersionQuota } from '../domain/quota.js';
import type { Queryable } from './db.js';
import { countVersions, lockInstance } from './instances.js';
import { type KeyVersion, type NewKeyVersion, insertVersion } from './versions.js';

/**
 * The one locked check-and-insert for every path that creates a version (CreateKey,
 * CreateKeyVersion, automatic rotation, rotation import). The instance row lock serialises
 * every version insert of the instance, so concurrent calls never overshoot the quota, and
 * the count read under it is the same number GetKmsInstanceQuotaInfos reports.
 * Default keys (no instance) have no quota.
 * @throws Rejected.LimitExceeded, Forbidden.DKMSInstanceNotFound
 */
export async function insertVersionWithinQuota(tx: Queryable, version: NewKeyVersion): Promise<KeyVersion> {
  if (version.instanceId !== null) {
    const instance = await lockInstance(tx, version.instanceId);
    if (!instance) throw instanceNotFound();
    assertVersionQuota(instance, await countVersions(tx, instance.id));
  }
  return insertVersion(tx, version);
}

/**
 * The one way versions leave the quota: with their key (seed 002: versions are deleted only
 * with the key). Takes the same instance lock as the insert, so a count read under it never
 * sees a half-deleted key. Returns how many versions were removed.
 */
export async function deleteKeyWithVersions(tx: Queryable, key: { id: string; instanceId: string | null }): Promise<number> {
  if (key.instanceId !== null) await lockInstance(tx, key.instanceId);
  const { rowCount } = await tx.query('DELETE FROM key_versions WHERE key_id = $1', [key.id]);
  await tx.query('DELETE FROM keys WHERE id = $1', [key.id]);
  return rowCount ?? 0;
}
