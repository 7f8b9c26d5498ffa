import type { WrappingAlgorithm } from '../domain/import-token.js';
import type { Queryable } from './db.js';

/**
 * A BYOK wrapping key pair: the private half lives in the HSM (CKA_ID = id), the public half's
 * DER is kept here. `keyId` is null while the pair waits in the pre-generated pool; once
 * issued it names the key, the algorithm and the expiry of the one import token bound to it.
 */
export interface WrappingKey {
  id: string;
  publicKeyDer: Buffer;
  keyId: string | null;
  algorithm: WrappingAlgorithm | null;
  rawDecrypt: boolean;
  issuedAt: Date | null;
  expiresAt: Date | null;
  createdAt: Date;
}

interface WrappingKeyRow {
  id: string;
  public_key_der: Buffer;
  key_id: string | null;
  algorithm: WrappingAlgorithm | null;
  raw_decrypt: boolean;
  issued_at: Date | null;
  expires_at: Date | null;
  created_at: Date;
}

const toWrappingKey = (r: WrappingKeyRow): WrappingKey => ({
  id: r.id,
  publicKeyDer: r.public_key_der,
  keyId: r.key_id,
  algorithm: r.algorithm,
  rawDecrypt: r.raw_decrypt,
  issuedAt: r.issued_at,
  expiresAt: r.expires_at,
  createdAt: r.created_at,
});

/** What binds an issued pair to its key and token. */
export interface WrappingKeyIssue {
  keyId: string;
  algorithm: WrappingAlgorithm;
  issuedAt: Date;
  expiresAt: Date;
}

/** Adds a freshly generated pair to the pool (`issue` absent) or records it as issued at once. */
export async function insertWrappingKey(
  db: Queryable,
  pair: { id: string; publicKeyDer: Buffer; rawDecrypt: boolean; createdAt: Date },
  issue?: WrappingKeyIssue,
): Promise<WrappingKey> {
  const { rows } = await db.query<WrappingKeyRow>(
    `INSERT INTO wrapping_keys (id, public_key_der, raw_decrypt, created_at, key_id, algorithm, issued_at, expires_at)
     VALUES ($1,$2,$3,$4,$5,$6,$7,$8) RETURNING *`,
    [pair.id, pair.publicKeyDer, pair.rawDecrypt, pair.createdAt, issue?.keyId ?? null, issue?.algorithm ?? null, issue?.issuedAt ?? null, issue?.expiresAt ?? null],
  );
  return toWrappingKey(rows[0]!);
}

/**
 * Takes the oldest pooled pair of the given mode and issues it, in the caller's transaction.
 * `FOR UPDATE SKIP LOCKED`: concurrent callers on Postgres each take a different row without
 * waiting (PGlite serialises transactions, so there it is simply one after the other).
 * Returns undefined when the pool is empty.
 */
export async function takePooledWrappingKey(tx: Queryable, rawDecrypt: boolean, issue: WrappingKeyIssue): Promise<WrappingKey | undefined> {
  const { rows } = await tx.query<WrappingKeyRow>(
    `UPDATE wrapping_keys SET key_id = $2, algorithm = $3, issued_at = $4, expires_at = $5
     WHERE id = (
       SELECT id FROM wrapping_keys WHERE key_id IS NULL AND raw_decrypt = $1
       ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
     ) RETURNING *`,
    [rawDecrypt, issue.keyId, issue.algorithm, issue.issuedAt, issue.expiresAt],
  );
  return rows[0] ? toWrappingKey(rows[0]) : undefined;
}

/** Pooled (not yet issued) pairs of the given mode. */
export async function countPooledWrappingKeys(db: Queryable, rawDecrypt: boolean): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM wrapping_keys WHERE key_id IS NULL AND raw_decrypt = $1', [rawDecrypt]);
  return Number(rows[0]?.n ?? 0);
}

/** The pair an import token names, only if it was issued for `keyId`. */
export async function getIssuedWrappingKey(db: Queryable, id: string, keyId: string): Promise<WrappingKey | undefined> {
  const { rows } = await db.query<WrappingKeyRow>('SELECT * FROM wrapping_keys WHERE id = $1 AND key_id = $2', [id, keyId]);
  return rows[0] ? toWrappingKey(rows[0]) : undefined;
}

export async function getWrappingKey(db: Queryable, id: string): Promise<WrappingKey | undefined> {
  const { rows } = await db.query<WrappingKeyRow>('SELECT * FROM wrapping_keys WHERE id = $1', [id]);
  return rows[0] ? toWrappingKey(rows[0]) : undefined;
}

/** Issued pairs whose token expired at or before `now`, oldest first. */
export async function listExpiredWrappingKeys(db: Queryable, now: Date, limit: number): Promise<WrappingKey[]> {
  const { rows } = await db.query<WrappingKeyRow>(
    'SELECT * FROM wrapping_keys WHERE expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2',
    [now, limit],
  );
  return rows.map(toWrappingKey);
}

/** Deletes a pair's row (and, by cascade, its token record); true when it existed. */
export async function deleteWrappingKey(db: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await db.query('DELETE FROM wrapping_keys WHERE id = $1', [id]);
  return (rowCount ?? 0) > 0;
}

/** Records an issued import token (tokens are self-contained; this is for audit and cleanup). */
export async function insertImportToken(
  db: Queryable,
  t: { wrappingKeyId: string; keyId: string; algorithm: WrappingAlgorithm; expiresAt: Date; createdAt: Date },
): Promise<void> {
  await db.query(
    'INSERT INTO import_tokens (wrapping_key_id, key_id, algorithm, expires_at, created_at) VALUES ($1,$2,$3,$4,$5)',
    [t.wrappingKeyId, t.keyId, t.algorithm, t.expiresAt, t.createdAt],
  );
}
