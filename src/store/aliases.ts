import { recordChanges } from './change-tracking.js';
import type { Queryable } from './db.js';

export interface Alias {
  name: string;
  keyId: string;
  createdAt: Date;
}

interface AliasRow {
  name: string;
  key_id: string;
  created_at: Date;
}

const toAlias = (r: AliasRow): Alias => ({ name: r.name, keyId: r.key_id, createdAt: r.created_at });

/*
 * Alias names are case-insensitive and case-preserving (migration 004): every lookup compares
 * lower(name), which the unique index aliases_name_lower_unique serves.
 */

/** The alias named `name`, whatever its case. */
export async function getAlias(db: Queryable, name: string): Promise<Alias | undefined> {
  const { rows } = await db.query<AliasRow>('SELECT * FROM aliases WHERE lower(name) = lower($1)', [name]);
  return rows[0] ? toAlias(rows[0]) : undefined;
}

/**
 * Inserts the alias; returns false when the name is taken in any case (the unique violation
 * of either index is not an error here: no conflict target, so both are covered).
 */
export async function insertAlias(db: Queryable, name: string, keyId: string): Promise<boolean> {
  const { rowCount } = await db.query(
    'INSERT INTO aliases (name, key_id) VALUES ($1, $2) ON CONFLICT DO NOTHING',
    [name, keyId],
  );
  await recordChanges(db, { kind: 'alias', name });
  return (rowCount ?? 0) > 0;
}

export async function updateAlias(db: Queryable, name: string, keyId: string): Promise<boolean> {
  const { rowCount } = await db.query('UPDATE aliases SET key_id = $2 WHERE lower(name) = lower($1)', [name, keyId]);
  await recordChanges(db, { kind: 'alias', name });
  return (rowCount ?? 0) > 0;
}

export async function deleteAlias(db: Queryable, name: string): Promise<boolean> {
  const { rowCount } = await db.query('DELETE FROM aliases WHERE lower(name) = lower($1)', [name]);
  await recordChanges(db, { kind: 'alias', name });
  return (rowCount ?? 0) > 0;
}

export async function listAliases(
  db: Queryable,
  page: { offset: number; limit: number },
  keyId?: string,
): Promise<{ items: Alias[]; total: number }> {
  const where = keyId ? 'WHERE key_id = $1' : '';
  const base = keyId ? [keyId] : [];
  const { rows: count } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM aliases ${where}`, base);
  const { rows } = await db.query<AliasRow>(
    `SELECT * FROM aliases ${where} ORDER BY name LIMIT $${base.length + 1} OFFSET $${base.length + 2}`,
    [...base, page.limit, page.offset],
  );
  return { items: rows.map(toAlias), total: Number(count[0]?.n ?? 0) };
}

/** Aliases in the region (this store is one region): what the per-region cap counts. */
export async function countAliases(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM aliases');
  return Number(rows[0]?.n ?? 0);
}

/**
 * Serialises alias creation for the rest of the transaction (a transaction-scoped advisory
 * lock), so the count-then-insert of the per-region cap cannot overshoot under concurrency.
 */
export async function lockAliasNamespace(tx: Queryable): Promise<void> {
  await tx.query("SELECT pg_advisory_xact_lock(hashtext('hsm-kms:aliases'))");
}

/** Aliases whose key lives in one of `instanceIds` (what a key-user limited to them may list). */
export async function listAliasesOfInstances(
  db: Queryable,
  instanceIds: readonly string[],
  page: { offset: number; limit: number },
): Promise<{ items: Alias[]; total: number }> {
  const from = 'FROM aliases a JOIN keys k ON k.id = a.key_id WHERE k.instance_id = ANY($1)';
  const { rows: count } = await db.query<{ n: string }>(`SELECT count(*) AS n ${from}`, [instanceIds]);
  const { rows } = await db.query<AliasRow>(`SELECT a.* ${from} ORDER BY a.name LIMIT $2 OFFSET $3`, [instanceIds, page.limit, page.offset]);
  return { items: rows.map(toAlias), total: Number(count[0]?.n ?? 0) };
}
