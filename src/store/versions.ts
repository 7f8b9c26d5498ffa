import type { KeyVersion, KeyVersionState, VersionStorage } from '../domain/key-version.js';
import { recordChanges } from './change-tracking.js';
import type { Queryable } from './db.js';

export type { KeyVersion };

export interface VersionRow {
  id: string;
  key_id: string;
  instance_id: string | null;
  ordinal: number;
  state: KeyVersionState;
  storage: VersionStorage;
  sealed_material: Buffer | null;
  wrapped_material: Buffer | null;
  public_key: Buffer | null;
  has_material: boolean;
  material_fingerprint: Buffer | null;
  material_expire_at: Date | null;
  created_at: Date;
}

export const toVersion = (r: VersionRow): KeyVersion => ({
  id: r.id,
  keyId: r.key_id,
  instanceId: r.instance_id,
  ordinal: r.ordinal,
  state: r.state,
  storage: r.storage,
  sealedMaterial: r.sealed_material,
  wrappedMaterial: r.wrapped_material,
  publicKey: r.public_key,
  hasMaterial: r.has_material,
  materialFingerprint: r.material_fingerprint,
  materialExpireAt: r.material_expire_at,
  createdAt: r.created_at,
});

/** A version to insert; its ordinal is the key's next one, assigned in the insert. */
export type NewKeyVersion = Omit<KeyVersion, 'ordinal' | 'createdAt' | 'wrappedMaterial' | 'publicKey'> & {
  createdAt?: Date;
  wrappedMaterial?: Buffer | null;
  publicKey?: Buffer | null;
};

/**
 * Inserts a version with the key's next ordinal. Callers go through store/quota.ts
 * (`insertVersionWithinQuota`), which holds the instance lock that also serialises ordinals;
 * the unique (key_id, ordinal) constraint backs it up.
 */
export async function insertVersion(tx: Queryable, v: NewKeyVersion): Promise<KeyVersion> {
  const { rows } = await tx.query<VersionRow>(
    `INSERT INTO key_versions (id, key_id, instance_id, ordinal, state, storage, sealed_material, has_material,
                               material_fingerprint, material_expire_at, created_at, wrapped_material, public_key)
     VALUES ($1, $2, $3, (SELECT coalesce(max(ordinal), 0) + 1 FROM key_versions WHERE key_id = $2), $4, $5, $6, $7, $8, $9, $10, $11, $12)
     RETURNING *`,
    [
      v.id,
      v.keyId,
      v.instanceId,
      v.state,
      v.storage,
      v.sealedMaterial,
      v.hasMaterial,
      v.materialFingerprint,
      v.materialExpireAt,
      v.createdAt ?? new Date(),
      v.wrappedMaterial ?? null,
      v.publicKey ?? null,
    ],
  );
  await recordChanges(tx, { kind: 'version', id: v.id });
  return toVersion(rows[0]!);
}

export async function getVersion(db: Queryable, id: string): Promise<KeyVersion | undefined> {
  const { rows } = await db.query<VersionRow>('SELECT * FROM key_versions WHERE id = $1', [id]);
  return rows[0] ? toVersion(rows[0]) : undefined;
}

/** A key's versions, oldest (ordinal 1) first. */
export async function listVersions(
  db: Queryable,
  keyId: string,
  page: { offset: number; limit: number } = { offset: 0, limit: 100_000 },
): Promise<{ items: KeyVersion[]; total: number }> {
  const { rows: count } = await db.query<{ n: string }>('SELECT count(*) AS n FROM key_versions WHERE key_id = $1', [keyId]);
  const { rows } = await db.query<VersionRow>(
    'SELECT * FROM key_versions WHERE key_id = $1 ORDER BY ordinal LIMIT $2 OFFSET $3',
    [keyId, page.limit, page.offset],
  );
  return { items: rows.map(toVersion), total: Number(count[0]?.n ?? 0) };
}

/** The key's version waiting to be rotated in (seed 002: at most one). */
export async function getPendingVersion(db: Queryable, keyId: string): Promise<KeyVersion | undefined> {
  const { rows } = await db.query<VersionRow>(`SELECT * FROM key_versions WHERE key_id = $1 AND state = 'PendingRotation'`, [keyId]);
  return rows[0] ? toVersion(rows[0]) : undefined;
}

/** The key's version bound to this material fingerprint (seed 000 binding, per version). */
export async function findVersionByFingerprint(db: Queryable, keyId: string, fingerprint: Buffer): Promise<KeyVersion | undefined> {
  const { rows } = await db.query<VersionRow>(
    'SELECT * FROM key_versions WHERE key_id = $1 AND material_fingerprint = $2 ORDER BY ordinal LIMIT 1',
    [keyId, fingerprint],
  );
  return rows[0] ? toVersion(rows[0]) : undefined;
}

/** What an import, a deletion or an expiry changes on a version's material. */
export interface MaterialChange {
  hasMaterial: boolean;
  /** undefined: unchanged. */
  sealedMaterial?: Buffer | null;
  /** undefined: unchanged. */
  wrappedMaterial?: Buffer | null;
  materialFingerprint?: Buffer | null;
  materialExpireAt?: Date | null;
}

export async function updateVersionMaterial(db: Queryable, id: string, change: MaterialChange): Promise<void> {
  const { rows } = await db.query<{ key_id: string }>(
    `UPDATE key_versions SET has_material = $2,
       sealed_material = CASE WHEN $3::boolean THEN $4 ELSE sealed_material END,
       material_fingerprint = CASE WHEN $5::boolean THEN $6 ELSE material_fingerprint END,
       material_expire_at = CASE WHEN $7::boolean THEN $8::timestamptz ELSE material_expire_at END,
       wrapped_material = CASE WHEN $9::boolean THEN $10 ELSE wrapped_material END
     WHERE id = $1 RETURNING key_id`,
    [
      id,
      change.hasMaterial,
      change.sealedMaterial !== undefined,
      change.sealedMaterial ?? null,
      change.materialFingerprint !== undefined,
      change.materialFingerprint ?? null,
      change.materialExpireAt !== undefined,
      change.materialExpireAt ?? null,
      change.wrappedMaterial !== undefined,
      change.wrappedMaterial ?? null,
    ],
  );
  // The key row carries its primary version's expiry (keys.ts KEY_COLUMNS): it changes too.
  await recordChanges(db, { kind: 'version', id }, ...rows.map((r) => ({ kind: 'key' as const, id: r.key_id })));
}

/** Moves a version between states, only from `from` (a conditional update); false when it did not match. */
export async function updateVersionState(db: Queryable, id: string, from: KeyVersionState, to: KeyVersionState): Promise<boolean> {
  const { rowCount } = await db.query('UPDATE key_versions SET state = $3 WHERE id = $1 AND state = $2', [id, from, to]);
  await recordChanges(db, { kind: 'version', id });
  return rowCount === 1;
}

/** Versions whose imported material is due to expire at `now`, soonest first (seed 000). */
export async function listVersionsWithMaterialDue(
  db: Queryable,
  now: Date,
  limit: number,
  excludeIds: readonly string[] = [],
): Promise<Array<{ keyId: string; versionId: string; materialExpireAt: Date }>> {
  const { rows } = await db.query<{ key_id: string; id: string; material_expire_at: Date }>(
    `SELECT key_id, id, material_expire_at FROM key_versions
     WHERE material_expire_at IS NOT NULL AND material_expire_at <= $1 AND NOT (id = ANY($3::uuid[]))
     ORDER BY material_expire_at, id LIMIT $2`,
    [now, limit, excludeIds],
  );
  return rows.map((r) => ({ keyId: r.key_id, versionId: r.id, materialExpireAt: r.material_expire_at }));
}
