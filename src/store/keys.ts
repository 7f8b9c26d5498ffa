import type { Key, KeySpec, KeyState, KeyStorageMechanism, KeyUsage, Origin, ProtectionLevel } from '../domain/key.js';
import type { Queryable } from './db.js';

export type { Key };

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
  key_storage_mechanism: KeyStorageMechanism | null;
  automatic_rotation: Key['automaticRotation'];
  rotation_interval_seconds: number | null;
  last_rotation_date: Date | null;
  next_rotation_date: Date | null;
  rotation_failure: string | null;
  primary_version_id: string;
  primary_material_expire_at: Date | null;
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
  storageMechanism: r.key_storage_mechanism,
  automaticRotation: r.automatic_rotation,
  rotationIntervalSeconds: r.rotation_interval_seconds,
  lastRotationDate: r.last_rotation_date,
  nextRotationDate: r.next_rotation_date,
  rotationFailure: r.rotation_failure,
  primaryVersionId: r.primary_version_id,
  primaryMaterialExpireAt: r.primary_material_expire_at,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** The columns of a key row plus its primary version's expiry (read-only, owned by the version). */
const KEY_COLUMNS = `keys.*, (SELECT v.material_expire_at FROM key_versions v WHERE v.id = keys.primary_version_id) AS primary_material_expire_at`;

/** Fields a key row stores (the primary version's expiry is the version's). */
type KeyField = keyof Omit<Key, 'id' | 'createdAt' | 'updatedAt' | 'primaryMaterialExpireAt'>;

/** camelCase field → column, for the generic update below. */
const COLUMNS: Record<KeyField, string> = {
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
  storageMechanism: 'key_storage_mechanism',
  automaticRotation: 'automatic_rotation',
  rotationIntervalSeconds: 'rotation_interval_seconds',
  lastRotationDate: 'last_rotation_date',
  nextRotationDate: 'next_rotation_date',
  rotationFailure: 'rotation_failure',
  primaryVersionId: 'primary_version_id',
};

export type NewKey = Omit<Key, 'createdAt' | 'updatedAt' | 'primaryMaterialExpireAt'> & { createdAt?: Date };
export type KeyChanges = Partial<Omit<Key, 'id' | 'createdAt' | 'updatedAt' | 'primaryMaterialExpireAt'>>;

export async function insertKey(tx: Queryable, k: NewKey): Promise<Key> {
  const fields = Object.keys(COLUMNS) as KeyField[];
  const columns = ['id', ...fields.map((f) => COLUMNS[f]), 'created_at', 'updated_at'];
  const now = k.createdAt ?? new Date();
  const values = [k.id, ...fields.map((f) => k[f]), now, now];
  const { rows } = await tx.query<KeyRow>(
    `INSERT INTO keys (${columns.join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING ${KEY_COLUMNS}`,
    values,
  );
  return toKey(rows[0]!);
}

export async function getKey(db: Queryable, id: string, options: { forUpdate?: boolean } = {}): Promise<Key | undefined> {
  const { rows } = await db.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM keys WHERE id = $1${options.forUpdate ? ' FOR UPDATE OF keys' : ''}`, [id]);
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
  changes: KeyChanges,
  expectState?: KeyState,
): Promise<Key | undefined> {
  const entries = (Object.keys(changes) as KeyField[]).filter((f) => changes[f] !== undefined);
  const sets = entries.map((f, i) => `${COLUMNS[f]} = $${i + 2}`);
  const params: unknown[] = [id, ...entries.map((f) => changes[f])];
  let where = 'id = $1';
  if (expectState) {
    params.push(expectState);
    where += ` AND state = $${params.length}`;
  }
  const { rows } = await db.query<KeyRow>(
    `UPDATE keys SET ${[...sets, 'updated_at = now()'].join(', ')} WHERE ${where} RETURNING ${KEY_COLUMNS}`,
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
    `SELECT ${KEY_COLUMNS} FROM keys ${where} ORDER BY created_at, id LIMIT $${params.length + 1} OFFSET $${params.length + 2}`,
    [...params, page.limit, page.offset],
  );
  return { items: rows.map(toKey), total: Number(count[0]?.n ?? 0) };
}

/** What a rotation writes on its key (seed 002): the new primary version and the new dates. */
export interface RotationChanges {
  primaryVersionId: string;
  lastRotationDate: Date;
  /** null while automatic rotation is off. */
  nextRotationDate: Date | null;
}

/**
 * Applies a rotation only if the key's NextRotationDate is still the one the caller read
 * (`… WHERE next_rotation_date IS NOT DISTINCT FROM $seen`): two workers, a retry or a restart
 * that read the same due date never both rotate. Clears `rotation_failure`. Returns undefined
 * when the row did not match.
 */
export async function updateKeyRotation(
  db: Queryable,
  id: string,
  changes: RotationChanges,
  seenNextRotationDate: Date | null,
): Promise<Key | undefined> {
  const { rows } = await db.query<KeyRow>(
    `UPDATE keys SET primary_version_id = $2, last_rotation_date = $3, next_rotation_date = $4, rotation_failure = NULL, updated_at = now()
     WHERE id = $1 AND next_rotation_date IS NOT DISTINCT FROM $5::timestamptz
     RETURNING ${KEY_COLUMNS}`,
    [id, changes.primaryVersionId, changes.lastRotationDate, changes.nextRotationDate, seenNextRotationDate],
  );
  return rows[0] ? toKey(rows[0]) : undefined;
}

/**
 * Keys whose automatic rotation is due at `now` (NextRotationDate passed, rotation Enabled,
 * so not Suspended), soonest first; for the sweeper, which skips `excludeIds` (already tried
 * in this sweep). Served by keys_rotation_due_idx.
 */
export async function listKeysDueForRotation(
  db: Queryable,
  now: Date,
  limit: number,
  excludeIds: readonly string[] = [],
): Promise<Array<{ keyId: string; nextRotationDate: Date }>> {
  const { rows } = await db.query<{ id: string; next_rotation_date: Date }>(
    `SELECT id, next_rotation_date FROM keys
     WHERE automatic_rotation = 'Enabled' AND next_rotation_date IS NOT NULL AND next_rotation_date <= $1
       AND NOT (id = ANY($3::text[]))
     ORDER BY next_rotation_date, id LIMIT $2`,
    [now, limit, excludeIds],
  );
  return rows.map((r) => ({ keyId: r.id, nextRotationDate: r.next_rotation_date }));
}
