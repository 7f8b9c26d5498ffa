import type pg from 'pg';
import type { MetadataChange } from '../services/repositories.js';

/**
 * Ties "what a write changed" to the write itself, so no use case can forget to invalidate a
 * cache: every store function that writes a cached row calls `recordChanges` with the handle
 * it wrote on. Inside `withTransaction` the changes wait on the transaction and reach the
 * pool's sink right after COMMIT (and are dropped on ROLLBACK); on the pool itself (a write
 * outside a transaction) they reach it at once. Either way they are also written to the
 * cache-change journal (the backstop every node reads: cache/change-journal.ts). The sink (cache/node-caches.ts, wired by the
 * composition root) drops the entries on this node synchronously and publishes them to the
 * other nodes; the write waits for that (bounded) before the use case answers.
 */
export type ChangeSink = (changes: readonly MetadataChange[]) => void | Promise<void>;

const sinks = new WeakMap<pg.Pool, ChangeSink>();
/** The node id the pool's journal rows carry: that node applied them already (cache/change-journal.ts). */
const origins = new WeakMap<pg.Pool, string>();
/** The pool each client belongs to (pg does not expose it). */
const poolOfClient = new WeakMap<pg.PoolClient, pg.Pool>();
/** Changes of the open transaction on a client (withTransaction). */
const openTransactions = new WeakMap<pg.PoolClient, MetadataChange[]>();

/** Remembers which pool a client belongs to; createDb calls it once per pool. */
export function trackPoolClients(pool: pg.Pool): void {
  pool.on('connect', (client) => poolOfClient.set(client as pg.PoolClient, pool));
}

/**
 * Where the committed changes of this pool's writes go (one sink per pool; the last one set
 * wins), and the node id their journal rows carry.
 */
export function setChangeSink(pool: pg.Pool, sink: ChangeSink, origin?: string): void {
  sinks.set(pool, sink);
  if (origin !== undefined) origins.set(pool, origin);
}

/**
 * Records changes made through `db`: held until COMMIT inside a transaction, else delivered
 * now. Resolves once the sink is done with them (it has told the other nodes); never rejects.
 */
export async function recordChanges(db: pg.Pool | pg.PoolClient, ...changes: MetadataChange[]): Promise<void> {
  if (changes.length === 0) return;
  const open = openTransactions.get(db as pg.PoolClient);
  if (open) {
    open.push(...changes);
    return;
  }
  const pool = isPool(db) ? db : poolOfClient.get(db);
  if (!pool) return;
  // A write outside a transaction has committed already: on record right after it (a process
  // killed between the two leaves it to the cache's maximum age, as before the journal).
  await pool.query(JOURNAL_INSERT, [JSON.stringify(changes), originOf(pool)]).catch(() => undefined);
  await deliver(pool, changes);
}

/** withTransaction: a transaction began on `client`. */
export function beginTrackedTransaction(client: pg.PoolClient): void {
  openTransactions.set(client, []);
}

/**
 * withTransaction, right before COMMIT: writes what the transaction changed to the cache-change
 * journal (migration 014) in the same transaction, so the change is on record exactly when it
 * committed — even if this process dies before it publishes (cache/change-journal.ts reads it).
 */
export async function journalTrackedChanges(client: pg.PoolClient): Promise<void> {
  const changes = openTransactions.get(client);
  if (changes && changes.length > 0) await client.query(JOURNAL_INSERT, [JSON.stringify(changes), originOf(poolOfClient.get(client))]);
}

const JOURNAL_INSERT = 'INSERT INTO cache_changes (changes, origin) VALUES ($1, $2)';
const originOf = (pool: pg.Pool | undefined): string | null => (pool && origins.get(pool)) ?? null;

/** withTransaction: the transaction committed; what it changed, for `deliverChanges` once the connection is released. */
export function takeTrackedChanges(client: pg.PoolClient): readonly MetadataChange[] {
  const changes = openTransactions.get(client) ?? [];
  openTransactions.delete(client);
  return changes;
}

/** Hands committed changes to the pool's sink. Never rejects. */
export async function deliverChanges(pool: pg.Pool, changes: readonly MetadataChange[]): Promise<void> {
  if (changes.length > 0) await deliver(pool, changes);
}

/** withTransaction: the transaction rolled back; nothing it recorded happened. */
export function discardTrackedTransaction(client: pg.PoolClient): void {
  openTransactions.delete(client);
}

/** A sink that fails must not turn a committed write into an error answer: it reports its own failures. */
async function deliver(pool: pg.Pool, changes: readonly MetadataChange[]): Promise<void> {
  try {
    await sinks.get(pool)?.(changes);
  } catch {
    // The sink logs; the write stands.
  }
}

function isPool(db: pg.Pool | pg.PoolClient): db is pg.Pool {
  return typeof (db as pg.Pool).totalCount === 'number';
}
