import type { KeySpec, KeyState, KeyUsage, Origin, ProtectionLevel } from '../domain/key.js';
import type { Queryable } from './db.js';

/** A key's metadata row. Material lives in the HSM (or sealed under its root key) per version. */
export interface Key {
  id: string;
  instanceId: string | null;
  protectionLevel: ProtectionLevel;
  keySpec: KeySpec;
  keyUsage: KeyUsage;
  origin: Origin;
  state: KeyState;
  description: string;
  creator: string;
  deletionProtection: boolean;
  deletionProtectionDescription: string;
  deleteDate: Date | null;
  automaticRotation: 'Enabled' | 'Disabled' | 'Suspended';
  rotationIntervalSeconds: number | null;
  lastRotationDate: Date | null;
  nextRotationDate: Date | null;
  primaryVersionId: string | null;
  materialFingerprint: Buffer | null;
  materialExpireAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

interface KeyRow {
  id: string;
  instance_id: string | null;
  protection_level: ProtectionLevel;
  key_spec: KeySpec;
  key_usage: KeyUsage;
  origin: Origin;
  state: KeyState;
  description: string;
  creator: string;
  deletion_protection: boolean;
  deletion_protection_description: string;
  delete_date: Date | null;
  automatic_rotation: Key['automaticRotation'];
  rotation_interval_seconds: number | null;
  last_rotation_date: Date | null;
  next_rotation_date: Date | null;
  primary_version_id: string | null;
  material_fingerprint: Buffer | null;
  material_expire_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export const toKey = (r: KeyRow): Key => ({
  id: r.id,
  instanceId: r.instance_id,
  protectionLevel: r.protection_level,
  keySpec: r.key_spec,
  keyUsage: r.key_usage,
  origin: r.origin,
  state: r.state,
  description: r.description,
  creator: r.creator,
  deletionProtection: r.deletion_protection,
  deletionProtectionDescription: r.deletion_protection_description,
  deleteDate: r.delete_date,
  automaticRotation: r.automatic_rotation,
  rotationIntervalSeconds: r.rotation_interval_seconds,
  lastRotationDate: r.last_rotation_date,
  nextRotationDate: r.next_rotation_date,
  primaryVersionId: r.primary_version_id,
  materialFingerprint: r.material_fingerprint,
  materialExpireAt: r.material_expire_at,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** camelCase field → column, for the generic update below. */
const COLUMNS: Record<keyof Omit<Key, 'id' | 'createdAt' | 'updatedAt'>, string> = {
  instanceId: 'instance_id',
  protectionLevel: 'protection_level',
  keySpec: 'key_spec',
  keyUsage: 'key_usage',
  origin: 'origin',
  state: 'state',
  description: 'description',
  creator: 'creator',
  deletionProtection: 'deletion_protection',
  deletionProtectionDescription: 'deletion_protection_description',
  deleteDate: 'delete_date',
  automaticRotation: 'automatic_rotation',
  rotationIntervalSeconds: 'rotation_interval_seconds',
  lastRotationDate: 'last_rotation_date',
  nextRotationDate: 'next_rotation_date',
  primaryVersionId: 'primary_version_id',
  materialFingerprint: 'material_fingerprint',
  materialExpireAt: 'material_expire_at',
};

export type NewKey = Omit<Key, 'createdAt' | 'updatedAt'> & { createdAt?: Date };

export async function insertKey(tx: Queryable, k: NewKey): Promise<Key> {
  const fields = Object.keys(COLUMNS) as Array<keyof typeof COLUMNS>;
  const columns = ['id', ...fields.map((f) => COLUMNS[f]), 'created_at', 'updated_at'];
  const now = k.createdAt ?? new Date();
  const values = [k.id, ...fields.map((f) => k[f]), now, now];
  const { rows } = await tx.query<KeyRow>(
    `INSERT INTO keys (${columns.join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING *`,
    values,
  );
  return toKey(rows[0]!);
}

export async function getKey(db: Queryable, id: string, options: { forUpdate?: boolean } = {}): Promise<Key | undefined> {
  const { rows } = await db.query<KeyRow>(`SELECT * FROM keys WHERE id = $1${options.forUpdate ? ' FOR UPDATE' : ''}`, [id]);
  return rows[0] ? toKey(rows[0]) : undefined;
}

/**
 * Updates the given fields. With `expectState` the update is conditional
 * (`… WHERE state = $expected`), so two racing transitions never both apply; returns
 * undefined when the row did not match.
 */
export async function updateKey(
  db: Queryable,
  id: string,
  changes: Partial<Omit<Key, 'id' | 'createdAt' | 'updatedAt'>>,
  expectState?: KeyState,
): Promise<Key | undefined> {
  const entries = (Object.keys(changes) as Array<keyof typeof COLUMNS>).filter((f) => changes[f] !== undefined);
  const sets = entries.map((f, i) => `${COLUMNS[f]} = $${i + 2}`);
  const params: unknown[] = [id, ...entries.map((f) => changes[f])];
  let where = 'id = $1';
  if (expectState) {
    params.push(expectState);
    where += ` AND state = $${params.length}`;
  }
  const { rows } = await db.query<KeyRow>(
    `UPDATE keys SET ${[...sets, 'updated_at = now()'].join(', ')} WHERE ${where} RETURNING *`,
    params,
  );
  return rows[0] ? toKey(rows[0]) : undefined;
}

export interface KeyFilter {
  states?: KeyState[];
  specs?: string[];
  usages?: string[];
  protectionLevels?: string[];
  origins?: string[];
  instanceIds?: string[];
}

export async function listKeys(
  db: Queryable,
  filter: KeyFilter,
  page: { offset: number; limit: number },
): Promise<{ items: Key[]; total: number }> {
  const conditions: string[] = [];
  const params: unknown[] = [];
  const add = (column: string, values: string[] | undefined) => {
    if (!values || values.length === 0) return;
    params.push(values);
    conditions.push(`${column} = ANY($${params.length})`);
  };
  add('state', filter.states);
  add('key_spec', filter.specs);
  add('key_usage', filter.usages);
  add('protection_level', filter.protectionLevels);
  add('origin', filter.origins);
  add('instance_id', filter.instanceIds);
  const where = conditions.length ? `WHERE ${conditions.join(' AND ')}` : '';
  const { rows: count } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM keys ${where}`, params);
  const { rows } = await db.query<KeyRow>(
    `SELECT * FROM keys ${where} ORDER BY created_at, id LIMIT $${params.length + 1} OFFSET $${params.length + 2}`,
    [...params, page.limit, page.offset],
  );
  return { items: rows.map(toKey), total: Number(count[0]?.n ?? 0) };
}

/** Keys whose imported material is due to expire at `now` (seed 000), soonest first. */
export async function listKeysWithMaterialDue(
  db: Queryable,
  now: Date,
  limit: number,
  excludeIds: readonly string[] = [],
): Promise<Array<{ id: string; materialExpireAt: Date }>> {
  const { rows } = await db.query<{ id: string; material_expire_at: Date }>(
    `SELECT id, material_expire_at FROM keys
     WHERE material_expire_at IS NOT NULL AND material_expire_at <= $1 AND NOT (id = ANY($3::text[]))
     ORDER BY material_expire_at, id LIMIT $2`,
    [now, limit, excludeIds],
  );
  return rows.map((r) => ({ id: r.id, materialExpireAt: r.material_expire_at }));
}

/**
 * Clears a key's material expiry and moves it to `state`, only if its expiry is still
 * `expectedExpireAt` and is due at `now`: a conditional update, so a retried or duplicated
 * expiry job, or one racing a re-import that moved the expiry, never applies twice.
 * Returns undefined when the row did not match.
 */
export async function clearDueMaterialExpiry(
  db: Queryable,
  id: string,
  expectedExpireAt: Date,
  now: Date,
  state: KeyState,
): Promise<Key | undefined> {
  const { rows } = await db.query<KeyRow>(
    `UPDATE keys SET state = $4, material_expire_at = NULL, updated_at = now()
     WHERE id = $1 AND material_expire_at = $2 AND material_expire_at <= $3 RETURNING *`,
    [id, expectedExpireAt, now, state],
  );
  return rows[0] ? toKey(rows[0]) : undefined;
}
