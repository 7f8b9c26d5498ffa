/**
 * The audit trail in Postgres (issue 17): hash-chained events, sharded over AUDIT_CHAINS
 * chains (domain/audit.ts), and the signed digests of each chain.
 *
 * Appending locks the chain's head row FOR UPDATE, seals the events after it (seq, prev_hash,
 * hash), inserts them in one statement and moves the head — inside the caller's transaction,
 * so an event commits or rolls back with the change it records. A transaction of
 * withTransaction appends its events last, just before COMMIT (store/commit-hooks.ts), so a
 * head is held only for the append and the commit; chains are locked in ascending id order,
 * so two transactions touching several chains cannot deadlock on them.
 */
import pg from 'pg';
import { type AuditDigest, type AuditEvent, type AuditRecord, chainOf, sealEvent } from '../domain/audit.js';
import { beforeCommit, openTransactionOf } from './commit-hooks.js';
import { type Queryable, withTransaction } from './db.js';

export type { AuditEvent, AuditRecord };

/** Each open transaction's events, appended by one commit hook (keyed by the transaction, not the client). */
const pendingOf = new WeakMap<object, AuditEvent[]>();

/**
 * Records one event. In a transaction of withTransaction, it is appended at the end of that
 * transaction (and rolled back with it); given the pool, in a transaction of its own; given
 * any other client, at once in whatever that client is doing.
 * `detail` must never hold plaintext, key material, tokens, PINs or secrets.
 */
export async function recordAudit(db: Queryable, e: AuditEvent): Promise<void> {
  if (db instanceof pg.Pool) {
    await withTransaction(db, (tx) => recordAudit(tx, e));
    return;
  }
  const transaction = openTransactionOf(db);
  if (!transaction) {
    await appendAuditEvents(db, [e]);
    return;
  }
  const pending = pendingOf.get(transaction);
  if (pending) {
    pending.push(e);
    return;
  }
  const events = [e];
  pendingOf.set(transaction, events);
  beforeCommit(db, (tx) => appendAuditEvents(tx, events));
}

/**
 * Appends `events` to their chains (one INSERT per chain), in the caller's transaction.
 * The caller commits; `at` defaults to now.
 */
export async function appendAuditEvents(tx: Queryable, events: readonly AuditEvent[]): Promise<void> {
  if (events.length === 0) return;
  const byChain = new Map<number, AuditEvent[]>();
  for (const e of events) {
    const chain = chainOf(e);
    const list = byChain.get(chain);
    if (list) list.push(e);
    else byChain.set(chain, [e]);
  }
  const now = new Date();
  for (const chainId of [...byChain.keys()].sort((a, b) => a - b)) {
    const head = await lockChainHead(tx, chainId);
    let { seq, hash } = head;
    const sealed: AuditRecord[] = [];
    for (const e of byChain.get(chainId)!) {
      const record = sealEvent(e, chainId, ++seq, hash, now);
      hash = record.hash;
      sealed.push(record);
    }
    await insertRecords(tx, sealed);
    await tx.query('UPDATE audit_chain_heads SET seq = $2, hash = $3 WHERE chain_id = $1', [chainId, seq, hash]);
  }
}

async function lockChainHead(tx: Queryable, chainId: number): Promise<{ seq: number; hash: string }> {
  const select = () =>
    tx.query<{ seq: string; hash: string }>('SELECT seq, hash FROM audit_chain_heads WHERE chain_id = $1 FOR UPDATE', [chainId]);
  let { rows } = await select();
  if (rows.length === 0) {
    // A chain the migration did not seed (AUDIT_CHAINS raised later).
    await tx.query('INSERT INTO audit_chain_heads (chain_id) VALUES ($1) ON CONFLICT DO NOTHING', [chainId]);
    ({ rows } = await select());
  }
  const row = rows[0]!;
  return { seq: Number(row.seq), hash: row.hash };
}

async function insertRecords(tx: Queryable, records: readonly AuditRecord[]): Promise<void> {
  const column = <T>(pick: (r: AuditRecord) => T): T[] => records.map(pick);
  await tx.query(
    `INSERT INTO audit_events
       (chain_id, seq, at, request_id, access_key_id, source_ip, action, key_id, key_version_id, result_code, detail, prev_hash, hash)
     SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
                          $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])`,
    [
      column((r) => r.chainId),
      column((r) => r.seq),
      column((r) => r.at.toISOString()),
      column((r) => r.requestId),
      column((r) => r.accessKeyId),
      column((r) => r.sourceIp),
      column((r) => r.action),
      column((r) => r.keyId),
      column((r) => r.keyVersionId),
      column((r) => r.resultCode),
      column((r) => r.detail),
      column((r) => r.prevHash),
      column((r) => r.hash),
    ],
  );
}

interface AuditRow {
  chain_id: number;
  seq: string;
  at: Date;
  request_id: string | null;
  access_key_id: string | null;
  source_ip: string | null;
  action: string;
  key_id: string | null;
  key_version_id: string | null;
  result_code: string;
  detail: string;
  prev_hash: string;
  hash: string;
}

const toRecord = (r: AuditRow): AuditRecord => ({
  chainId: Number(r.chain_id),
  seq: Number(r.seq),
  at: r.at,
  requestId: r.request_id,
  accessKeyId: r.access_key_id,
  sourceIp: r.source_ip,
  action: r.action,
  keyId: r.key_id,
  keyVersionId: r.key_version_id,
  resultCode: r.result_code,
  detail: r.detail,
  prevHash: r.prev_hash,
  hash: r.hash,
});

export interface AuditFilter {
  keyId?: string | undefined;
  action?: string | undefined;
  accessKeyId?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
  /** Newest first when true (the dashboard's "recent events"); oldest first otherwise. */
  newestFirst?: boolean | undefined;
  limit?: number | undefined;
}

/** An event for reading (list, dashboard): its detail parsed. Verify and export use the raw AuditRecord. */
export type AuditEntry = Omit<AuditRecord, 'detail'> & { detail: Record<string, unknown> };

const toEntry = (r: AuditRecord): AuditEntry => ({ ...r, detail: JSON.parse(r.detail) as Record<string, unknown> });

/** Events matching `filter`, by time (then chain and seq). */
export async function listAudit(db: Queryable, filter: AuditFilter = {}): Promise<AuditEntry[]> {
  const order = filter.newestFirst ? 'DESC' : 'ASC';
  const { rows } = await db.query<AuditRow>(
    `SELECT * FROM audit_events
     WHERE ($1::text IS NULL OR key_id = $1) AND ($2::text IS NULL OR action = $2) AND ($3::text IS NULL OR access_key_id = $3)
       AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5)
     ORDER BY at ${order}, chain_id ${order}, seq ${order}
     LIMIT $6`,
    [
      filter.keyId ?? null,
      filter.action ?? null,
      filter.accessKeyId ?? null,
      filter.since ?? null,
      filter.until ?? null,
      filter.limit ?? 1000,
    ],
  );
  return rows.map((r) => toEntry(toRecord(r)));
}

/** The most recent events (the ops dashboard). */
export const listRecentAudit = (db: Queryable, limit = 50): Promise<AuditEntry[]> => listAudit(db, { newestFirst: true, limit });

/** One page of a chain in seq order after `afterSeq` (verify and export walk chains with it). */
export async function chainPage(db: Queryable, chainId: number, afterSeq: number, limit: number): Promise<AuditRecord[]> {
  const { rows } = await db.query<AuditRow>(
    'SELECT * FROM audit_events WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
    [chainId, afterSeq, limit],
  );
  return rows.map(toRecord);
}

/** Every chain id that has a head, an event or a digest. */
export async function listChainIds(db: Queryable): Promise<number[]> {
  const { rows } = await db.query<{ chain_id: number }>(
    `SELECT chain_id FROM audit_chain_heads UNION SELECT DISTINCT chain_id FROM audit_events
     UNION SELECT DISTINCT chain_id FROM audit_digests ORDER BY 1`,
  );
  return rows.map((r) => Number(r.chain_id));
}

export async function getChainHead(db: Queryable, chainId: number): Promise<{ seq: number; hash: string } | undefined> {
  const { rows } = await db.query<{ seq: string; hash: string }>('SELECT seq, hash FROM audit_chain_heads WHERE chain_id = $1', [chainId]);
  return rows[0] ? { seq: Number(rows[0].seq), hash: rows[0].hash } : undefined;
}

/** The first and last `at` of a chain's events in a seq range (a digest's time range). */
export async function chainTimeRange(db: Queryable, chainId: number, firstSeq: number, lastSeq: number): Promise<{ firstAt: Date; lastAt: Date } | undefined> {
  const { rows } = await db.query<{ first_at: Date | null; last_at: Date | null }>(
    'SELECT min(at) AS first_at, max(at) AS last_at FROM audit_events WHERE chain_id = $1 AND seq BETWEEN $2 AND $3',
    [chainId, firstSeq, lastSeq],
  );
  const row = rows[0];
  return row?.first_at && row.last_at ? { firstAt: row.first_at, lastAt: row.last_at } : undefined;
}

/** A digest as stored: what was signed, its hash, the signature and which key made it. */
export interface StoredAuditDigest extends AuditDigest {
  digestHash: string;
  signature: Buffer;
  signingKeyId: string;
}

interface DigestRow {
  chain_id: number;
  digest_seq: string;
  first_seq: string;
  last_seq: string;
  event_count: string;
  first_at: Date;
  last_at: Date;
  last_hash: string;
  prev_digest_hash: string;
  created_at: Date;
  digest_hash: string;
  signature: Buffer;
  signing_key_id: string;
}

const toDigest = (r: DigestRow): StoredAuditDigest => ({
  chainId: Number(r.chain_id),
  digestSeq: Number(r.digest_seq),
  firstSeq: Number(r.first_seq),
  lastSeq: Number(r.last_seq),
  eventCount: Number(r.event_count),
  firstAt: r.first_at,
  lastAt: r.last_at,
  lastHash: r.last_hash,
  prevDigestHash: r.prev_digest_hash,
  createdAt: r.created_at,
  digestHash: r.digest_hash,
  signature: r.signature,
  signingKeyId: r.signing_key_id,
});

/** A chain's digests in digest_seq order. */
export async function listDigests(db: Queryable, chainId: number): Promise<StoredAuditDigest[]> {
  const { rows } = await db.query<DigestRow>('SELECT * FROM audit_digests WHERE chain_id = $1 ORDER BY digest_seq', [chainId]);
  return rows.map(toDigest);
}

export async function lastDigest(db: Queryable, chainId: number): Promise<StoredAuditDigest | undefined> {
  const { rows } = await db.query<DigestRow>('SELECT * FROM audit_digests WHERE chain_id = $1 ORDER BY digest_seq DESC LIMIT 1', [chainId]);
  return rows[0] ? toDigest(rows[0]) : undefined;
}

export async function insertDigest(db: Queryable, d: StoredAuditDigest): Promise<void> {
  await db.query(
    `INSERT INTO audit_digests (chain_id, digest_seq, first_seq, last_seq, event_count, first_at, last_at, last_hash,
                                prev_digest_hash, created_at, digest_hash, signature, signing_key_id)
     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)`,
    [d.chainId, d.digestSeq, d.firstSeq, d.lastSeq, d.eventCount, d.firstAt, d.lastAt, d.lastHash, d.prevDigestHash, d.createdAt, d.digestHash, d.signature, d.signingKeyId],
  );
}

/** Serialises digest creation per chain (a repeatable job and an on-demand run). */
export async function lockDigestCreation(tx: Queryable, chainId: number): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [AUDIT_DIGEST_LOCK, chainId]);
}

const AUDIT_DIGEST_LOCK = 1_717_000_017;
