import { recordChanges } from './change-tracking.js';
import type { Queryable } from './db.js';

export type AccessRole = 'admin' | 'key-user';

export interface AccessKey {
  id: string;
  /** The secret sealed under the HSM root key. */
  sealedSecret: Buffer;
  role: AccessRole;
  /** Instances a key-user may use; null means all. */
  instanceIds: string[] | null;
  status: 'Enabled' | 'Disabled';
  description: string;
  createdAt: Date;
}

interface AccessKeyRow {
  id: string;
  sealed_secret: Buffer;
  role: AccessRole;
  instance_ids: string[] | null;
  status: 'Enabled' | 'Disabled';
  description: string;
  created_at: Date;
}

const toAccessKey = (r: AccessKeyRow): AccessKey => ({
  id: r.id,
  sealedSecret: r.sealed_secret,
  role: r.role,
  instanceIds: r.instance_ids,
  status: r.status,
  description: r.description,
  createdAt: r.created_at,
});

export async function insertAccessKey(db: Queryable, a: Omit<AccessKey, 'createdAt' | 'status'>): Promise<AccessKey> {
  const { rows } = await db.query<AccessKeyRow>(
    `INSERT INTO access_keys (id, sealed_secret, role, instance_ids, description) VALUES ($1,$2,$3,$4,$5) RETURNING *`,
    [a.id, a.sealedSecret, a.role, a.instanceIds, a.description],
  );
  await recordChanges(db, { kind: 'accessKey', id: a.id });
  return toAccessKey(rows[0]!);
}

export async function getAccessKey(db: Queryable, id: string): Promise<AccessKey | undefined> {
  const { rows } = await db.query<AccessKeyRow>('SELECT * FROM access_keys WHERE id = $1', [id]);
  return rows[0] ? toAccessKey(rows[0]) : undefined;
}

export async function countAccessKeys(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM access_keys');
  return Number(rows[0]?.n ?? 0);
}

export async function listAccessKeys(db: Queryable): Promise<AccessKey[]> {
  const { rows } = await db.query<AccessKeyRow>('SELECT * FROM access_keys ORDER BY created_at, id');
  return rows.map(toAccessKey);
}

export async function setAccessKeyStatus(db: Queryable, id: string, status: 'Enabled' | 'Disabled'): Promise<boolean> {
  const { rowCount } = await db.query('UPDATE access_keys SET status = $2 WHERE id = $1', [id, status]);
  await recordChanges(db, { kind: 'accessKey', id });
  return (rowCount ?? 0) > 0;
}

export async function deleteAccessKey(db: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await db.query('DELETE FROM access_keys WHERE id = $1', [id]);
  await recordChanges(db, { kind: 'accessKey', id });
  return (rowCount ?? 0) > 0;
}
