import type { Queryable } from './db.js';

/** One version of a key. Its id is the 36-character prefix of every ciphertext it makes. */
export interface KeyVersion {
  id: string;
  keyId: string;
  instanceId: string | null;
  /** `token`: an HSM object with CKA_ID = id; `sealed`: material sealed under the HSM root key. */
  storage: 'token' | 'sealed';
  sealedMaterial: Buffer | null;
  hasMaterial: boolean;
  createdAt: Date;
}

interface VersionRow {
  id: string;
  key_id: string;
  instance_id: string | null;
  storage: 'token' | 'sealed';
  sealed_material: Buffer | null;
  has_material: boolean;
  created_at: Date;
}

const toVersion = (r: VersionRow): KeyVersion => ({
  id: r.id,
  keyId: r.key_id,
  instanceId: r.instance_id,
  storage: r.storage,
  sealedMaterial: r.sealed_material,
  hasMaterial: r.has_material,
  createdAt: r.created_at,
});

export async function insertVersion(tx: Queryable, v: Omit<KeyVersion, 'createdAt'> & { createdAt?: Date }): Promise<KeyVersion> {
  const { rows } = await tx.query<VersionRow>(
    `INSERT INTO key_versions (id, key_id, instance_id, storage, sealed_material, has_material, created_at)
     VALUES ($1,$2,$3,$4,$5,$6,$7) RETURNING *`,
    [v.id, v.keyId, v.instanceId, v.storage, v.sealedMaterial, v.hasMaterial, v.createdAt ?? new Date()],
  );
  return toVersion(rows[0]!);
}

export async function getVersion(db: Queryable, id: string): Promise<KeyVersion | undefined> {
  const { rows } = await db.query<VersionRow>('SELECT * FROM key_versions WHERE id = $1', [id]);
  return rows[0] ? toVersion(rows[0]) : undefined;
}

export async function listVersions(
  db: Queryable,
  keyId: string,
  page: { offset: number; limit: number } = { offset: 0, limit: 1000 },
): Promise<{ items: KeyVersion[]; total: number }> {
  const { rows: count } = await db.query<{ n: string }>('SELECT count(*) AS n FROM key_versions WHERE key_id = $1', [keyId]);
  const { rows } = await db.query<VersionRow>(
    'SELECT * FROM key_versions WHERE key_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3',
    [keyId, page.limit, page.offset],
  );
  return { items: rows.map(toVersion), total: Number(count[0]?.n ?? 0) };
}

export async function updateVersionMaterial(
  db: Queryable,
  id: string,
  material: { hasMaterial: boolean; sealedMaterial?: Buffer | null },
): Promise<void> {
  await db.query(
    `UPDATE key_versions SET has_material = $2, sealed_material = CASE WHEN $3::boolean THEN $4 ELSE sealed_material END WHERE id = $1`,
    [id, material.hasMaterial, material.sealedMaterial !== undefined, material.sealedMaterial ?? null],
  );
}
