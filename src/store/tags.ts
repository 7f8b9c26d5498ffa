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

export async function deleteAllTags(db: Queryable, keyId: string): Promise<void> {
  await db.query('DELETE FROM key_tags WHERE key_id = $1', [keyId]);
}

/** One (key, tag) pair, as ListTagResources returns them. */
export interface KeyTag extends Tag {
  keyId: string;
}

export interface TagPairQuery {
  /** Only these keys (null: any key). */
  keyIds: readonly string[] | null;
  /** Only tags matching one of these (a value-less filter matches any value); null: any tag. */
  tags: ReadonlyArray<{ key: string; value?: string | undefined }> | null;
  /** Only keys of these instances (null: any key, default keys included). */
  instanceIds: readonly string[] | null;
  /** Keyset cursor: pairs strictly after this one in (key id, tag key) order. */
  after: { keyId: string; tagKey: string } | null;
  limit: number;
}

/** (key, tag) pairs in (key id, tag key) order, for keyset pagination. */
export async function listTagPairs(db: Queryable, q: TagPairQuery): Promise<KeyTag[]> {
  const { rows } = await db.query<{ key_id: string; tag_key: string; tag_value: string }>(
    `SELECT t.key_id, t.tag_key, t.tag_value
       FROM key_tags t JOIN keys k ON k.id = t.key_id
      WHERE ($1::text[] IS NULL OR t.key_id = ANY($1))
        AND ($2::text[] IS NULL OR k.instance_id = ANY($2))
        AND ($3::jsonb IS NULL OR EXISTS (
              SELECT 1 FROM jsonb_array_elements($3::jsonb) f
               WHERE f->>'key' = t.tag_key AND (f->>'value' IS NULL OR f->>'value' = t.tag_value)))
        AND ($4::text IS NULL OR (t.key_id, t.tag_key) > ($4::text, $5::text))
      ORDER BY t.key_id, t.tag_key
      LIMIT $6`,
    [
      q.keyIds,
      q.instanceIds,
      q.tags ? JSON.stringify(q.tags.map((t) => ({ key: t.key, value: t.value ?? null }))) : null,
      q.after?.keyId ?? null,
      q.after?.tagKey ?? null,
      q.limit,
    ],
  );
  return rows.map((r) => ({ keyId: r.key_id, key: r.tag_key, value: r.tag_value }));
}
