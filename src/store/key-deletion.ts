import type { Queryable } from './db.js';

/**
 * Keys whose DeleteDate has come at `now` (PendingDeletion), soonest first; the sweeper skips
 * `excludeIds` (already tried in this sweep). Served by keys_delete_date_idx.
 */
export async function listKeysDueForDeletion(
  db: Queryable,
  now: Date,
  limit: number,
  excludeIds: readonly string[] = [],
): Promise<Array<{ keyId: string; deleteDate: Date }>> {
  const { rows } = await db.query<{ id: string; delete_date: Date }>(
    `SELECT id, delete_date FROM keys
     WHERE state = 'PendingDeletion' AND delete_date IS NOT NULL AND delete_date <= $1 AND NOT (id = ANY($3::text[]))
     ORDER BY delete_date, id LIMIT $2`,
    [now, limit, excludeIds],
  );
  return rows.map((r) => ({ keyId: r.id, deleteDate: r.delete_date }));
}

/** The ids of the BYOK wrapping key pairs issued for a key (their private halves live in the HSM). */
export async function listWrappingKeyIdsOfKey(db: Queryable, keyId: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>('SELECT id FROM wrapping_keys WHERE key_id = $1 ORDER BY id', [keyId]);
  return rows.map((r) => r.id);
}
