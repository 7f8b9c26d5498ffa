import type { Queryable } from './db.js';

export interface Tag {
  key: string;
  value: string;
}

/** Inserts or overwrites tags of a key (TagResource semantics: an existing key gets the new value). */
export async function upsertTags(db: Queryable, keyId: string, tags: readonly Tag[]): Promise<void> {
  for (const tag of tags) {
    await db.query(
      `INSERT INTO key_tags (key_id, tag_key, tag_value) VALUES ($1,$2,$3)
       ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = EXCLUDED.tag_value`,
      [keyId, tag.key, tag.value],
    );
  }
}

export async function deleteTags(db: Queryable, keyId: string, tagKeys: readonly string[]): Promise<void> {
  await db.query('DELETE FROM key_tags WHERE key_id = $1 AND tag_key = ANY($2)', [keyId, tagKeys]);
}

export async function listTags(db: Queryable, keyId: string): Promise<Tag[]> {
  const { rows } = await db.query<{ tag_key: string; tag_value: string }>(
    'SELECT tag_key, tag_value FROM key_tags WHERE key_id = $1 ORDER BY tag_key',
    [keyId],
  );
  return rows.map((r) => ({ key: r.tag_key, value: r.tag_value }));
}
