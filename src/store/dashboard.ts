import { ENCRYPTION_COUNT_WARNING } from '../domain/version-usage.js';
import type { Queryable } from './db.js';

/**
 * The ops dashboard's aggregates (issue 17), each one query that Postgres answers from an
 * index (migration 009 and the partial indexes of 003/007): the browser only ever receives
 * counts and short lists, never rows to add up.
 */

/** Keys of one instance counted by one dimension's values. */
export interface KeyBreakdown {
  byState: Record<string, number>;
  byOrigin: Record<string, number>;
  byProtectionLevel: Record<string, number>;
}

/** Instance id ('' for default keys, which belong to no instance) → its key counts. */
export async function keyBreakdowns(db: Queryable): Promise<Map<string, KeyBreakdown>> {
  // One streaming aggregate over keys_dashboard_idx (an index-only scan, already in group
  // order): at most instances × 4 states × 2 origins × 2 levels rows, folded per dimension here.
  const { rows } = await db.query<{ instance_id: string | null; state: string; origin: string; protection_level: string; n: string }>(
    `SELECT instance_id, state, origin, protection_level, count(*) AS n
       FROM keys
      GROUP BY instance_id, state, origin, protection_level`,
  );
  const out = new Map<string, KeyBreakdown>();
  const add = (counts: Record<string, number>, value: string, n: number) => {
    counts[value] = (counts[value] ?? 0) + n;
  };
  for (const r of rows) {
    const id = r.instance_id ?? '';
    let b = out.get(id);
    if (!b) {
      b = { byState: {}, byOrigin: {}, byProtectionLevel: {} };
      out.set(id, b);
    }
    const n = Number(r.n);
    add(b.byState, r.state, n);
    add(b.byOrigin, r.origin, n);
    add(b.byProtectionLevel, r.protection_level, n);
  }
  return out;
}

export type UpcomingKind = 'rotation' | 'materialExpiry' | 'deletion';

/** Something due for a key before the horizon (overdue ones included). */
export interface UpcomingEvent {
  kind: UpcomingKind;
  instanceId: string;
  keyId: string;
  /** The version whose material expires (materialExpiry only). */
  versionId?: string | undefined;
  at: Date;
}

/** Per instance ('' for default keys): how many of each kind are due, and the first few of each. */
export interface UpcomingByInstance {
  counts: Record<UpcomingKind, number>;
  first: UpcomingEvent[];
}

/**
 * Automatic rotations, material expiries and scheduled deletions due before `horizon`, per
 * instance: the counts, and the `perKind` soonest of each kind. Each kind is a range scan of
 * its partial index (keys_rotation_due_idx, key_versions_material_expiry_idx,
 * keys_delete_date_idx).
 */
export async function upcomingEvents(db: Queryable, horizon: Date, perKind = 10): Promise<Map<string, UpcomingByInstance>> {
  const { rows } = await db.query<{ kind: UpcomingKind; instance_id: string | null; key_id: string; version_id: string | null; at: Date; rank: string; total: string }>(
    `WITH due AS (
       SELECT 'rotation' AS kind, instance_id, id AS key_id, NULL::uuid AS version_id, next_rotation_date AS at
         FROM keys WHERE automatic_rotation = 'Enabled' AND next_rotation_date <= $1
       UNION ALL
       SELECT 'materialExpiry', instance_id, key_id, id, material_expire_at
         FROM key_versions WHERE material_expire_at IS NOT NULL AND material_expire_at <= $1 AND has_material
       UNION ALL
       SELECT 'deletion', instance_id, id, NULL::uuid, delete_date
         FROM keys WHERE state = 'PendingDeletion' AND delete_date <= $1
     ), ranked AS (
       SELECT due.*, row_number() OVER w AS rank, count(*) OVER (PARTITION BY kind, instance_id) AS total
         FROM due WINDOW w AS (PARTITION BY kind, instance_id ORDER BY at, key_id)
     )
     SELECT * FROM ranked WHERE rank <= $2 ORDER BY at, key_id`,
    [horizon, perKind],
  );
  const out = new Map<string, UpcomingByInstance>();
  for (const r of rows) {
    const id = r.instance_id ?? '';
    let u = out.get(id);
    if (!u) {
      u = { counts: { rotation: 0, materialExpiry: 0, deletion: 0 }, first: [] };
      out.set(id, u);
    }
    u.counts[r.kind] = Number(r.total);
    u.first.push({ kind: r.kind, instanceId: id, keyId: r.key_id, versionId: r.version_id ?? undefined, at: r.at });
  }
  return out;
}

/** A key version with its encryption count (usage per version, flushed in batches). */
export interface VersionUsage {
  versionId: string;
  keyId: string;
  instanceId: string;
  encryptionCount: number;
}

const toUsage = (r: { id: string; key_id: string; instance_id: string | null; encryption_count: string }): VersionUsage => ({
  versionId: r.id,
  keyId: r.key_id,
  instanceId: r.instance_id ?? '',
  encryptionCount: Number(r.encryption_count),
});

/**
 * The versions with the most encryptions. Not indexed on purpose: an index on
 * encryption_count would turn every batched count update into a non-HOT update of
 * key_versions; a top-N sort over 100,000 versions is a few milliseconds.
 */
export async function topEncryptingVersions(db: Queryable, limit = 10): Promise<VersionUsage[]> {
  const { rows } = await db.query<{ id: string; key_id: string; instance_id: string | null; encryption_count: string }>(
    `SELECT id, key_id, instance_id, encryption_count FROM key_versions
      WHERE encryption_count > 0 ORDER BY encryption_count DESC, id LIMIT $1`,
    [limit],
  );
  return rows.map(toUsage);
}

/** Versions at or past the 2^31 warning (key_versions_encryption_warning_idx, migration 007). */
export async function versionsPastEncryptionWarning(db: Queryable, limit = 50): Promise<VersionUsage[]> {
  // A literal, not a parameter: the planner must see the partial index's own predicate.
  const { rows } = await db.query<{ id: string; key_id: string; instance_id: string | null; encryption_count: string }>(
    `SELECT id, key_id, instance_id, encryption_count FROM key_versions
      WHERE encryption_count >= ${ENCRYPTION_COUNT_WARNING} ORDER BY encryption_count DESC LIMIT $1`,
    [limit],
  );
  return rows.map(toUsage);
}
