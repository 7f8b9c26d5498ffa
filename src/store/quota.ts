import { instanceNotFound } from '../domain/errors.js';
import { assertVersionQuota } from '../domain/quota.js';
import { recordChanges } from './change-tracking.js';
import { beforeCommit, openTransactionOf } from './commit-hooks.js';
import type { Queryable } from './db.js';
import { type KeyVersion, type NewKeyVersion, insertVersion } from './versions.js';

/**
 * The instance's key quota use (seed 002: each version consumes one unit) is the counter
 * `instances.versions_used` (migration 010), its key count `keys_used` (migration 013), and
 * this module is the one place that moves them: every path that adds versions (CreateKey,
 * CreateKeyVersion, automatic rotation, rotation import) or keys (insertKey) and every path
 * that removes them (key deletion, reset) comes through here, in the transaction that adds or
 * removes the rows, so the counters always equal count(*) of the instance's versions and keys.
 *
 * The check and the move are one `UPDATE … RETURNING`, the transaction's last statement before
 * COMMIT (a final commit hook, after the audit append): the instance's row lock it takes —
 * which serialises every version insert of the instance, so concurrent calls never overshoot
 * the quota — is held only for that statement and the commit, never across the use case's
 * other queries or an HSM call. Lock order: audit chain heads, then instances (UpdateKmsInstance
 * and reset keep it too). Default keys (no instance) have no quota.
 */

/** What a transaction adds to (or, negative, takes from) an instance's counters. */
interface UsageMove {
  versions: number;
  keys: number;
}

/** Each open transaction's pending counter moves, per instance (keyed by the transaction, not the client). */
const pendingOf = new WeakMap<object, Map<string, UsageMove>>();

/**
 * Inserts a version; one quota unit of its instance is taken before the commit.
 * @throws (at commit) Rejected.LimitExceeded, Forbidden.DKMSInstanceNotFound
 */
export async function insertVersionWithinQuota(tx: Queryable, version: NewKeyVersion): Promise<KeyVersion> {
  const inserted = await insertVersion(tx, version);
  if (version.instanceId !== null) await moveUsage(tx, version.instanceId, { versions: 1, keys: 0 });
  return inserted;
}

/**
 * A key was inserted in the instance (store/keys.ts insertKey): its key count (`keys_used`,
 * migration 013, ListKeys' TotalCount) moves with the same statement as the versions.
 */
export async function countNewKey(tx: Queryable, instanceId: string | null): Promise<void> {
  if (instanceId !== null) await moveUsage(tx, instanceId, { versions: 0, keys: 1 });
}

/**
 * The one way versions leave the quota: with their key (seed 002: versions are deleted only
 * with the key). The units are given back in the same transaction. Returns how many versions
 * were removed.
 */
export async function deleteKeyWithVersions(tx: Queryable, key: { id: string; instanceId: string | null }): Promise<number> {
  const versions = await tx.query<{ id: string }>('DELETE FROM key_versions WHERE key_id = $1 RETURNING id', [key.id]);
  // The key's aliases would go by ON DELETE CASCADE; deleted here so that caches learn their names.
  const aliases = await tx.query<{ name: string }>('DELETE FROM aliases WHERE key_id = $1 RETURNING name', [key.id]);
  const deletedKeys = await tx.query('DELETE FROM keys WHERE id = $1', [key.id]);
  await recordChanges(
    tx,
    { kind: 'key', id: key.id },
    ...versions.rows.map((r) => ({ kind: 'version' as const, id: r.id })),
    ...aliases.rows.map((r) => ({ kind: 'alias' as const, name: r.name })),
  );
  const removed = versions.rowCount ?? 0;
  if (key.instanceId !== null) await moveUsage(tx, key.instanceId, { versions: -removed, keys: -(deletedKeys.rowCount ?? 0) });
  return removed;
}

/** Reset (store/reset.ts) deleted every key and version: no instance uses any quota. */
export async function clearVersionsUsed(tx: Queryable): Promise<void> {
  await tx.query('UPDATE instances SET versions_used = 0, keys_used = 0 WHERE versions_used <> 0 OR keys_used <> 0');
}

/**
 * How many keys the instances hold (all instances when `instanceIds` is undefined), from
 * their counters; the keys without an instance are not included.
 */
export async function sumKeysUsed(db: Queryable, instanceIds: readonly string[] | undefined): Promise<number> {
  const { rows } = await db.query<{ n: string | null }>(
    'SELECT sum(keys_used) AS n FROM instances WHERE $1::text[] IS NULL OR id = ANY($1)',
    [instanceIds ?? null],
  );
  return Number(rows[0]?.n ?? 0);
}

/**
 * Moves the instance's counters before the commit of the transaction open on `tx` (moves of
 * one transaction add up); outside a transaction of withTransaction, now.
 */
async function moveUsage(tx: Queryable, instanceId: string, move: UsageMove): Promise<void> {
  const transaction = openTransactionOf(tx);
  if (!transaction) {
    await applyMove(tx, instanceId, move);
    return;
  }
  const pending = pendingOf.get(transaction);
  if (pending) {
    const sum = pending.get(instanceId) ?? { versions: 0, keys: 0 };
    pending.set(instanceId, { versions: sum.versions + move.versions, keys: sum.keys + move.keys });
    return;
  }
  const moves = new Map([[instanceId, move]]);
  pendingOf.set(transaction, moves);
  beforeCommit(
    tx,
    async (client) => {
      // Ascending ids: two transactions moving several instances never deadlock.
      for (const id of [...moves.keys()].sort()) {
        const move = moves.get(id)!;
        if (move.versions !== 0 || move.keys !== 0) await applyMove(client, id, move);
      }
    },
    'final',
  );
}

/**
 * One statement: locks the row, moves the counter and reads the quota. READ COMMITTED re-reads
 * a row another transaction changed while this one waited for its lock, so the check sees
 * every committed version.
 */
async function applyMove(tx: Queryable, instanceId: string, move: UsageMove): Promise<void> {
  const { rows } = await tx.query<{ id: string; key_quota: number; versions_used: number }>(
    'UPDATE instances SET versions_used = versions_used + $2, keys_used = keys_used + $3 WHERE id = $1 RETURNING id, key_quota, versions_used',
    [instanceId, move.versions, move.keys],
  );
  const row = rows[0];
  const adding = move.versions > 0 || move.keys > 0;
  if (!row) {
    if (adding) throw instanceNotFound();
    return;
  }
  if (move.versions > 0) assertVersionQuota({ id: row.id, keyQuota: row.key_quota }, row.versions_used - move.versions, move.versions);
}
