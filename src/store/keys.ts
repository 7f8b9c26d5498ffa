import type { Key, KeySpec, KeyState, KeyStorageMechanism, KeyUsage, Origin, ProtectionLevel } from '../domain/key.js';
import { recordChanges } from './change-tracking.js';
import type { Queryable } from './db.js';
import { countNewKey, sumKeysUsed } from './quota.js';
import { type KeyVersion, type VersionRow, toVersion } from './versions.js';

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
  await recordChanges(tx, { kind: 'key', id: k.id });
  await countNewKey(tx, k.instanceId);
  return toKey(rows[0]!);
}

export async function getKey(db: Queryable, id: string, options: { forUpdate?: boolean } = {}): Promise<Key | undefined> {
  const { rows } = await db.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM keys WHERE id = $1${options.forUpdate ? ' FOR UPDATE OF keys' : ''}`, [id]);
  return rows[0] ? toKey(rows[0]) : undefined;
}

/** A version row's columns, each prefixed `pv_` (the primary version in getKeyWithPrimaryVersion). */
const PRIMARY_VERSION_COLUMNS = [
  'id', 'key_id', 'instance_id', 'ordinal', 'state', 'storage', 'sealed_material', 'wrapped_material',
  'public_key', 'has_material', 'material_fingerprint', 'material_expire_at', 'created_at',
] as const satisfies ReadonlyArray<keyof VersionRow>;

/**
 * Keys with their primary versions, in one query (one round trip for a crypto action's first
 * use of a key instead of two, and one for all the keys asked for together: key-batch-reads.ts):
 * what the metadata caches load a key with. Ids with no key are absent from the map.
 */
export async function getKeysWithPrimaryVersion(db: Queryable, ids: readonly string[]): Promise<Map<string, { key: Key; primaryVersion: KeyVersion | undefined }>> {
  const { rows } = await db.query<KeyRow & Record<`pv_${keyof VersionRow}`, unknown>>(
    `SELECT keys.*, pv.material_expire_at AS primary_material_expire_at, ${PRIMARY_VERSION_COLUMNS.map((c) => `pv.${c} AS pv_${c}`).join(', ')}
       FROM keys LEFT JOIN key_versions pv ON pv.id = keys.primary_version_id
      WHERE keys.id = ANY($1::text[])`,
    [ids],
  );
  const found = new Map<string, { key: Key; primaryVersion: KeyVersion | undefined }>();
  for (const row of rows) {
    const version = row.pv_id === null ? undefined : toVersion(Object.fromEntries(PRIMARY_VERSION_COLUMNS.map((c) => [c, row[`pv_${c}`]])) as unknown as VersionRow);
    found.set(row.id, { key: toKey(row), primaryVersion: version });
  }
  return found;
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
  await recordChanges(db, { kind: 'key', id });
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
    // One value: a plain equality, so an index led by the column also gives the list order
    // (one instance's keys walk keys_instance_list_order_idx; `= ANY` would not).
    params.push(values.length === 1 ? values[0] : values);
    conditions.push(values.length === 1 ? `${column} = $${params.length}` : `${column} = ANY($${params.length})`);
  };
  add('state', filter.states);
  add('key_spec', filter.specs);
  add('key_usage', filter.usages);
  add('protection_level', filter.protectionLevels);
  add('origin', filter.origins);
  add('instance_id', filter.instanceIds);
  const where = conditions.length ? `WHERE ${conditions.join(' AND ')}` : '';
  // The page's ids come from an index-only walk in list order (migration 011), then only its
  // rows are read: OFFSET never reads the rows it skips. The total runs on another connection
  // at the same time.
  const [total, { rows }] = await Promise.all([
    countKeys(db, filter, where, params),
    db.query<KeyRow>(
      `SELECT ${KEY_COLUMNS}
         FROM (SELECT id, created_at FROM keys ${where} ORDER BY created_at, id LIMIT $${params.length + 1} OFFSET $${params.length + 2}) page
         JOIN keys USING (id)
        ORDER BY page.created_at, page.id`,
      [...params, page.limit, page.offset],
    ),
  ]);
  return { items: rows.map(toKey), total };
}

/**
 * ListKeys' TotalCount. Without filters, or filtered by instance only, the instances' key
 * counters (store/quota.ts, migration 013) plus a count of the default keys (an index range
 * over instance_id IS NULL, only without an instance filter) — not a scan of every key; with
 * other filters, a count.
 */
async function countKeys(db: Queryable, filter: KeyFilter, where: string, params: unknown[]): Promise<number> {
  const { instanceIds, ...others } = filter;
  if (Object.values(others).every((values) => !values || values.length === 0)) {
    if (instanceIds && instanceIds.length > 0) return sumKeysUsed(db, instanceIds);
    const [inInstances, { rows }] = await Promise.all([
      sumKeysUsed(db, undefined),
      db.query<{ n: string }>('SELECT count(*) AS n FROM keys WHERE instance_id IS NULL'),
    ]);
    return inInstances + Number(rows[0]?.n ?? 0);
  }
  const { rows } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM keys ${where}`, params);
  return Number(rows[0]?.n ?? 0);
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
  await recordChanges(db, { kind: 'key', id });
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
