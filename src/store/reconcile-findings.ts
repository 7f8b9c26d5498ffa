import type { Queryable } from './db.js';

/** What the reconciler can find out of step between Postgres and the HSM. */
export type FindingKind = 'orphan-version-key' | 'orphan-wrapping-pair' | 'missing-version-key' | 'missing-wrapping-pair';

export interface Finding {
  kind: FindingKind;
  /** The object's CKA_ID: a version id or a wrapping key id. */
  objectId: string;
  keyId: string | null;
  firstSeenAt: Date;
  lastSeenAt: Date;
  flaggedAt: Date | null;
}

interface FindingRow {
  kind: FindingKind;
  object_id: string;
  key_id: string | null;
  first_seen_at: Date;
  last_seen_at: Date;
  flagged_at: Date | null;
}

const toFinding = (r: FindingRow): Finding => ({
  kind: r.kind,
  objectId: r.object_id,
  keyId: r.key_id,
  firstSeenAt: r.first_seen_at,
  lastSeenAt: r.last_seen_at,
  flaggedAt: r.flagged_at,
});

/** Serialises reconciler runs (two workers may run one at the same time). */
const RECONCILE_LOCK = 7_314_159_266;

export async function lockReconciler(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [RECONCILE_LOCK]);
}

export async function listFindings(db: Queryable): Promise<Finding[]> {
  const { rows } = await db.query<FindingRow>('SELECT * FROM reconcile_findings ORDER BY first_seen_at, kind, object_id');
  return rows.map(toFinding);
}

/** Records that this run found it (again): first sighting inserts, a later one moves last_seen_at. */
export async function recordFinding(db: Queryable, f: { kind: FindingKind; objectId: string; keyId: string | null }, now: Date): Promise<void> {
  await db.query(
    `INSERT INTO reconcile_findings (kind, object_id, key_id, first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)
     ON CONFLICT (kind, object_id) DO UPDATE SET last_seen_at = excluded.last_seen_at, key_id = excluded.key_id`,
    [f.kind, f.objectId, f.keyId, now],
  );
}

export async function markFindingFlagged(db: Queryable, kind: FindingKind, objectId: string, now: Date): Promise<void> {
  await db.query('UPDATE reconcile_findings SET flagged_at = $3 WHERE kind = $1 AND object_id = $2', [kind, objectId, now]);
}

export async function deleteFinding(db: Queryable, kind: FindingKind, objectId: string): Promise<void> {
  await db.query('DELETE FROM reconcile_findings WHERE kind = $1 AND object_id = $2', [kind, objectId]);
}

/**
 * The flagged rows whose object is still missing, per kind: the number the metrics endpoint
 * can expose (it is shared by every process, unlike an in-memory counter).
 */
export async function countFlaggedFindings(db: Queryable): Promise<Record<'missing-version-key' | 'missing-wrapping-pair', number>> {
  const { rows } = await db.query<{ kind: FindingKind; n: string }>(
    'SELECT kind, count(*) AS n FROM reconcile_findings WHERE flagged_at IS NOT NULL GROUP BY kind',
  );
  const count = (kind: FindingKind) => Number(rows.find((r) => r.kind === kind)?.n ?? 0);
  return { 'missing-version-key': count('missing-version-key'), 'missing-wrapping-pair': count('missing-wrapping-pair') };
}

/** What Postgres says the token should hold: the version keys and wrapping pairs committed rows name. */
export interface ReferencedObjects {
  /**
   * `token` versions that hold material, by id → key id: each must have its object, and only
   * these reference one (a version without committed material has none: an object with its
   * id is what an import that crashed before its commit left behind).
   */
  versionKeysExpected: Map<string, string>;
  /** Every wrapping pair, by id → key id (null: pooled). Each must have its private half. */
  wrappingPairs: Map<string, string | null>;
}

export async function readReferencedObjects(db: Queryable): Promise<ReferencedObjects> {
  const versions = await db.query<{ id: string; key_id: string }>(`SELECT id, key_id FROM key_versions WHERE storage = 'token' AND has_material`);
  const pairs = await db.query<{ id: string; key_id: string | null }>('SELECT id, key_id FROM wrapping_keys');
  return {
    versionKeysExpected: new Map(versions.rows.map((r) => [r.id, r.key_id])),
    wrappingPairs: new Map(pairs.rows.map((r) => [r.id, r.key_id])),
  };
}

/** Whether a row names this object id now (checked again right before an orphan is destroyed). */
export async function isObjectReferenced(db: Queryable, kind: 'orphan-version-key' | 'orphan-wrapping-pair', objectId: string): Promise<boolean> {
  // Object ids are UUIDs (hsm/pkcs11/object-inventory.ts lists no other), so the cast is safe.
  const sql =
    kind === 'orphan-version-key'
      ? `SELECT 1 FROM key_versions WHERE id = $1::uuid AND storage = 'token' AND has_material`
      : 'SELECT 1 FROM wrapping_keys WHERE id = $1';
  const { rows } = await db.query(sql, [objectId]);
  return rows.length > 0;
}
