import type { Instance, InstanceType } from '../domain/instance.js';
import { recordChanges } from './change-tracking.js';
import type { Queryable } from './db.js';

export type { Instance, InstanceType };

interface InstanceRow {
  id: string;
  name: string;
  type: InstanceType;
  key_quota: number;
  qps: number;
  key_storage: Instance['keyStorage'];
  status: string;
  created_at: Date;
}

const toInstance = (r: InstanceRow): Instance => ({
  id: r.id,
  name: r.name,
  type: r.type,
  keyQuota: r.key_quota,
  qps: r.qps,
  keyStorage: r.key_storage,
  status: r.status,
  createdAt: r.created_at,
});

export async function insertInstance(db: Queryable, i: Omit<Instance, 'createdAt' | 'status'>): Promise<Instance> {
  const { rows } = await db.query<InstanceRow>(
    `INSERT INTO instances (id, name, type, key_quota, qps, key_storage) VALUES ($1,$2,$3,$4,$5,$6) RETURNING *`,
    [i.id, i.name, i.type, i.keyQuota, i.qps, i.keyStorage],
  );
  await recordChanges(db, { kind: 'instance', id: i.id });
  return toInstance(rows[0]!);
}

export async function getInstance(db: Queryable, id: string): Promise<Instance | undefined> {
  const { rows } = await db.query<InstanceRow>('SELECT * FROM instances WHERE id = $1', [id]);
  return rows[0] ? toInstance(rows[0]) : undefined;
}

/** Locks the instance row for the rest of the transaction: quota checks and inserts serialise here. */
export async function lockInstance(tx: Queryable, id: string): Promise<Instance | undefined> {
  const { rows } = await tx.query<InstanceRow>('SELECT * FROM instances WHERE id = $1 FOR UPDATE', [id]);
  return rows[0] ? toInstance(rows[0]) : undefined;
}

export async function listInstances(
  db: Queryable,
  page: { offset: number; limit: number },
  filter: { type?: InstanceType | undefined; ids?: readonly string[] | null | undefined } = {},
): Promise<{ items: Instance[]; total: number }> {
  const conditions: string[] = [];
  const params: unknown[] = [];
  if (filter.type) {
    params.push(filter.type);
    conditions.push(`type = $${params.length}`);
  }
  if (filter.ids) {
    params.push(filter.ids);
    conditions.push(`id = ANY($${params.length})`);
  }
  const where = conditions.length ? `WHERE ${conditions.join(' AND ')}` : '';
  const { rows: count } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM instances ${where}`, params);
  const { rows } = await db.query<InstanceRow>(
    `SELECT * FROM instances ${where} ORDER BY created_at, id LIMIT $${params.length + 1} OFFSET $${params.length + 2}`,
    [...params, page.limit, page.offset],
  );
  return { items: rows.map(toInstance), total: Number(count[0]?.n ?? 0) };
}

export async function updateInstanceLimits(
  tx: Queryable,
  id: string,
  limits: { keyQuota?: number | undefined; qps?: number | undefined },
): Promise<Instance | undefined> {
  const { rows } = await tx.query<InstanceRow>(
    `UPDATE instances SET key_quota = COALESCE($2, key_quota), qps = COALESCE($3, qps) WHERE id = $1 RETURNING *`,
    [id, limits.keyQuota ?? null, limits.qps ?? null],
  );
  await recordChanges(tx, { kind: 'instance', id });
  return rows[0] ? toInstance(rows[0]) : undefined;
}

/**
 * Key quota units used: the instance's versions (seed 002), the one number every quota check
 * reads — the counter store/quota.ts keeps with the versions (migration 010), not a count.
 */
export async function getVersionsUsed(db: Queryable, instanceId: string): Promise<number> {
  const { rows } = await db.query<{ versions_used: number }>('SELECT versions_used FROM instances WHERE id = $1', [instanceId]);
  return rows[0]?.versions_used ?? 0;
}

/** One instance with its key quota use: what `kms quota`, the metrics and the dashboard show. */
export interface InstanceUsage {
  instance: Instance;
  /** Key versions held (every version consumes one unit of the key quota). */
  versionsUsed: number;
}

/** Every instance with its key quota use (the counter: one read, whatever the number of versions). */
export async function listInstanceUsage(db: Queryable): Promise<InstanceUsage[]> {
  const { rows } = await db.query<InstanceRow & { versions_used: number }>('SELECT * FROM instances ORDER BY created_at, id');
  return rows.map((r) => ({ instance: toInstance(r), versionsUsed: r.versions_used }));
}
