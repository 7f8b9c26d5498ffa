import type { Queryable } from './db.js';

/** A reservation of idempotency_keys (migration 012). */
export interface IdempotencyReservation {
  paramsSha256: Buffer;
  resourceId: string;
  createdAt: Date;
  /** True when this call made (or renewed an expired) reservation; false when a live one was there. */
  fresh: boolean;
}

/**
 * Reserves `resourceId` for (action, token), or returns the live reservation already there.
 * A reservation older than `expiredBefore` counts as absent and is replaced.
 */
export async function reserveIdempotencyKey(
  db: Queryable,
  entry: { action: string; clientToken: string; paramsSha256: Buffer; resourceId: string; now: Date; expiredBefore: Date },
): Promise<IdempotencyReservation> {
  const claimed = await db.query<{ params_sha256: Buffer; resource_id: string; created_at: Date }>(
    `INSERT INTO idempotency_keys (action, client_token, params_sha256, resource_id, created_at)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (action, client_token) DO UPDATE
       SET params_sha256 = EXCLUDED.params_sha256, resource_id = EXCLUDED.resource_id, created_at = EXCLUDED.created_at
       WHERE idempotency_keys.created_at < $6
     RETURNING params_sha256, resource_id, created_at`,
    [entry.action, entry.clientToken, entry.paramsSha256, entry.resourceId, entry.now, entry.expiredBefore],
  );
  const mine = claimed.rows[0];
  if (mine) return { paramsSha256: mine.params_sha256, resourceId: mine.resource_id, createdAt: mine.created_at, fresh: true };
  const { rows } = await db.query<{ params_sha256: Buffer; resource_id: string; created_at: Date }>(
    'SELECT params_sha256, resource_id, created_at FROM idempotency_keys WHERE action = $1 AND client_token = $2',
    [entry.action, entry.clientToken],
  );
  const theirs = rows[0];
  // Gone between the two statements (purged as expired): a reservation of our own then.
  if (!theirs) return reserveIdempotencyKey(db, entry);
  return { paramsSha256: theirs.params_sha256, resourceId: theirs.resource_id, createdAt: theirs.created_at, fresh: false };
}

/** Deletes up to `limit` reservations older than `expiredBefore`; returns how many. */
export async function purgeIdempotencyKeys(db: Queryable, expiredBefore: Date, limit = 100): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM idempotency_keys WHERE (action, client_token) IN
       (SELECT action, client_token FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2)`,
    [expiredBefore, limit],
  );
  return rowCount ?? 0;
}
