import { ENCRYPTION_COUNT_WARNING } from '../domain/version-usage.js';
import type { Queryable } from './db.js';

/**
 * Adds batched encryption counts to their versions in one statement. A version deleted since
 * (with its key) simply matches no row. Not a change of anything a metadata cache holds: the
 * count is read on its own (`versionEncryptionCount`), so no invalidation is published.
 */
export async function addEncryptionCounts(db: Queryable, counts: ReadonlyMap<string, number>): Promise<void> {
  if (counts.size === 0) return;
  const ids: string[] = [];
  const increments: string[] = [];
  for (const [id, n] of counts) {
    ids.push(id);
    increments.push(String(n));
  }
  // UPDATE … FROM (VALUES …), written with unnest so the statement text (and its plan) is the
  // same whatever the batch size.
  await db.query(
    `UPDATE key_versions v SET encryption_count = v.encryption_count + c.n
       FROM unnest($1::uuid[], $2::bigint[]) AS c(id, n)
      WHERE v.id = c.id`,
    [ids, increments],
  );
}

/** How many encryptions a version has made (as last flushed by every process). */
export async function versionEncryptionCount(db: Queryable, versionId: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT encryption_count AS n FROM key_versions WHERE id = $1', [versionId]);
  return Number(rows[0]?.n ?? 0);
}

/** Versions at or past the 2^31 warning mark (an index lookup: migration 007). */
export async function countVersionsPastEncryptionWarning(db: Queryable): Promise<number> {
  // A literal, not a parameter: the planner must see the partial index's own predicate.
  const { rows } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM key_versions WHERE encryption_count >= ${ENCRYPTION_COUNT_WARNING}`);
  return Number(rows[0]?.n ?? 0);
}
