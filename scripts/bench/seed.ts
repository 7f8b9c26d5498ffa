import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';

/**
 * Bulk copies of keys the API made, straight into the bench database: for ListKeys' 100,000
 * keys and the 100,000-version scale rows, where creating each through the API would take
 * minutes. Every column is copied from a template key and its primary version (so new columns
 * from later migrations come along), with a new key id, version id and creation time; the copies
 * of an HSM key share its material (a copy of the wrapped blob), which is what a version reads.
 */
export async function cloneKeys(db: pg.Client, templateKeyIds: readonly string[], count: number): Promise<number> {
  if (count <= 0 || templateKeyIds.length === 0) return 0;
  const keyColumns = await columns(db, 'keys');
  const versionColumns = await columns(db, 'key_versions');
  const prefix = `key-hzzb${randomBytes(3).toString('hex')}`;
  const keyExpr = (c: string) =>
    c === 'id' ? 'n.kid' : c === 'primary_version_id' ? 'n.vid' : c === 'created_at' ? "t.created_at + n.g * interval '1 microsecond'" : `t.${q(c)}`;
  const versionExpr = (c: string) => (c === 'id' ? 'n.vid' : c === 'key_id' ? 'n.kid' : `v.${q(c)}`);
  // n: one row per copy, with its template (round-robin), its new key id and version id.
  const numbered = `
    WITH templates AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS idx FROM keys WHERE id = ANY($1::text[])),
    n AS (
      SELECT g, '${prefix}' || lpad(g::text, 14, '0') AS kid, gen_random_uuid() AS vid, t.id AS template
      FROM generate_series(1, $2::int) g JOIN templates t ON t.idx = (g % (SELECT count(*) FROM templates))
    )`;
  await db.query('BEGIN');
  try {
    await db.query('SET CONSTRAINTS ALL DEFERRED');
    await db.query('CREATE TEMP TABLE bench_clone_ids (g int, kid text, vid uuid, template text) ON COMMIT DROP');
    await db.query(`INSERT INTO bench_clone_ids ${numbered} SELECT g, kid, vid, template FROM n`, [templateKeyIds, count]);
    await db.query(
      `INSERT INTO keys (${keyColumns.map(q).join(', ')})
       SELECT ${keyColumns.map(keyExpr).join(', ')} FROM bench_clone_ids n JOIN keys t ON t.id = n.template`,
    );
    await db.query(
      `INSERT INTO key_versions (${versionColumns.map(q).join(', ')})
       SELECT ${versionColumns.map(versionExpr).join(', ')}
       FROM bench_clone_ids n JOIN keys t ON t.id = n.template JOIN key_versions v ON v.id = t.primary_version_id`,
    );
    // The instances' counters follow the copied keys and versions (migrations 010, 013).
    await db.query(
      `UPDATE instances i SET versions_used = (SELECT count(*) FROM key_versions v WHERE v.instance_id = i.id),
                              keys_used = (SELECT count(*) FROM keys k WHERE k.instance_id = i.id)`,
    );
    await db.query('COMMIT');
  } catch (error) {
    await db.query('ROLLBACK');
    throw error;
  }
  // VACUUM as autovacuum would after a bulk insert: until the visibility map is set, an
  // index-only scan (ListKeys' page walk and count) reads the heap for every entry
  // (measured: a page at offset 50,000 in 83 ms instead of 13).
  await db.query('VACUUM ANALYZE keys');
  await db.query('VACUUM ANALYZE key_versions');
  return count;
}

/** Keys ids of the copies (or any keys) of an instance, for rows that spread over them. */
export async function keyIdsOfInstance(db: pg.Client, instanceId: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>('SELECT id FROM keys WHERE instance_id = $1', [instanceId]);
  return rows.map((r) => r.id);
}

export async function countKeys(db: pg.Client): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM keys');
  return Number(rows[0]?.n ?? 0);
}

async function columns(db: pg.Client, table: string): Promise<string[]> {
  const { rows } = await db.query<{ column_name: string }>(
    `SELECT column_name FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER' ORDER BY ordinal_position`,
    [table],
  );
  return rows.map((r) => r.column_name);
}

const q = (identifier: string) => `"${identifier.replace(/"/g, '""')}"`;

/** Persistent objects in the SoftHSM2 token(s) under the data dir: one `<uuid>.object` file each. */
export async function countTokenObjects(dataDir: string): Promise<number> {
  const tokensDir = path.join(dataDir, 'hsm', 'tokens');
  let count = 0;
  for (const token of await readdir(tokensDir, { withFileTypes: true })) {
    if (!token.isDirectory()) continue;
    const files = await readdir(path.join(tokensDir, token.name));
    count += files.filter((f) => f.endsWith('.object') && f !== 'token.object').length;
  }
  return count;
}
