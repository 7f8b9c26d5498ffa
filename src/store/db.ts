import pg from 'pg';
import { KmsError, unavailable } from '../domain/errors.js';
import { closeCommitHooks, openCommitHooks, runCommitHooks } from './commit-hooks.js';
import { faultPoint } from '../fault-points.js';
import { beginTrackedTransaction, deliverChanges, discardTrackedTransaction, journalTrackedChanges, takeTrackedChanges, trackPoolClients } from './change-tracking.js';

export type Db = pg.Pool;
export type Queryable = pg.Pool | pg.PoolClient;

export interface DbOptions {
  /** Pool size. */
  max?: number;
  /** How long a caller waits for a connection (a new one, or a free one of a full pool). */
  connectionTimeoutMillis?: number;
  /** How long one query may go unanswered. */
  queryTimeoutMillis?: number;
}

export function createDb(connectionString: string, max = 10, options: Omit<DbOptions, 'max'> = {}): Db {
  // Bounded waits: a store that stops answering turns into a 503, never a hung request.
  const pool = new pg.Pool({
    connectionString,
    max,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 5_000,
    query_timeout: options.queryTimeoutMillis ?? 30_000,
    Client: StoreClient,
  });
  // An idle client losing its server must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  // A checked-out client has no listener of pg-pool's (issue 19): one whose server goes away
  // between two queries of a transaction (say, while the use case waits for the HSM) emits
  // 'error' with nobody listening, and Node ends the process. Every client keeps this one for
  // its whole life; withTransaction releases a client that lost its connection with the error,
  // so the pool destroys it instead of handing it out again.
  pool.on('connect', (client) => {
    client.on('error', (error: Error) => {
      if (!connectionLosses.has(client)) connectionLosses.set(client, error);
    });
  });
  trackPoolClients(pool);
  return pool;
}

/** The error with which a pool client lost its connection, if it did. */
const connectionLosses = new WeakMap<pg.PoolClient, Error>();

/**
 * A pg client whose queries turn data exceptions (SQLSTATE class 22: a NUL byte, invalid
 * UTF-8, a string too long for its column, text that is not a uuid …) into InvalidParameter
 * where the value was sent: the backstop behind the edge's schemas, so a value they let
 * through is a 400, never a 500. Everything else passes through unchanged (withTransaction
 * must still see 40001/40P01 to re-run the transaction). Pool queries run on these clients
 * too (pg-pool's `query` checks one out and calls `client.query` with a callback).
 */
class StoreClient extends pg.Client {
  // pg's overloads are many; this one forwards every form and only rewrites the error.
  override query(...args: any[]): any {
    const last = args.length - 1;
    if (typeof args[last] === 'function') {
      const callback = args[last] as (error: unknown, result?: unknown) => void;
      args[last] = (error: unknown, result?: unknown) => callback(error ? translateDataException(error) : error, result);
      return (super.query as (...a: unknown[]) => unknown)(...args);
    }
    const result = (super.query as (...a: unknown[]) => unknown)(...args);
    if (result instanceof Promise) return result.catch((error: unknown) => Promise.reject(translateDataException(error)));
    return result;
  }
}

/** SQLSTATE class 22 → InvalidParameter, with a message that names neither the SQL nor the value. */
function translateDataException(error: unknown): unknown {
  return sqlState(error)?.startsWith('22') ? invalidStoredValue() : error;
}

const invalidStoredValue = () =>
  new KmsError(
    'InvalidParameter',
    'The specified parameter is not valid. A value has characters, a length or a format that cannot be stored.',
  );

export interface TransactionOptions {
  /**
   * Whether `fn` may run a second time when Postgres aborts the transaction on a serialization
   * failure or a deadlock (40001, 40P01), which only a re-run can resolve. True (the default)
   * only for callbacks whose every effect is in the transaction and so rolled back with it.
   * Callbacks that create or destroy HSM objects pass false: their conflict answers 503 and
   * the client retries the whole request.
   */
  rerunOnConflict?: boolean;
}

/**
 * Runs `fn` in one transaction (one per use case); rolls back on any error. A serialization
 * failure or deadlock re-runs `fn` once (see TransactionOptions), then answers 503.
 * Errors come out translated (translatePgError).
 */
export async function withTransaction<T>(
  db: Db,
  fn: (tx: pg.PoolClient) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const attempts = options.rerunOnConflict === false ? 1 : 2;
  for (let attempt = 1; ; attempt++) {
    let client: pg.PoolClient;
    try {
      client = await db.connect();
    } catch (error) {
      // Nothing was sent yet: whatever failed (refused, timed out, pool full, auth), the store
      // is not reachable for this request, and nothing of it committed.
      const refusal = error instanceof KmsError ? error : unreachable();
      rolledBack.add(refusal);
      throw refusal;
    }
    let broken: Error | undefined;
    let commitSent = false;
    let committed!: { result: T; changes: ReturnType<typeof takeTrackedChanges> };
    try {
      await client.query('BEGIN');
      beginTrackedTransaction(client);
      openCommitHooks(client);
      const result = await fn(client);
      // The audit trail appends the transaction's events last (store/commit-hooks.ts).
      await runCommitHooks(client);
      await journalTrackedChanges(client);
      commitSent = true;
      await client.query('COMMIT');
      committed = { result, changes: takeTrackedChanges(client) };
    } catch (error) {
      discardTrackedTransaction(client);
      await client.query('ROLLBACK').catch((rollbackError: unknown) => {
        // A connection that cannot even roll back goes, rather than back into the pool.
        broken = rollbackError instanceof Error ? rollbackError : new Error('rollback failed');
      });
      if (isConflict(error) && attempt < attempts) continue;
      const translated = translatePgError(error);
      // Failed before COMMIT went out: nothing of it can have committed. (A COMMIT whose answer
      // was lost may have; only a later read can tell.)
      if (!commitSent && typeof translated === 'object' && translated !== null) rolledBack.add(translated);
      throw translated;
    } finally {
      closeCommitHooks(client);
      client.release(broken ?? connectionLosses.get(client));
    }
    // KMS_FAULT_POINTS (tests only): committed, and the other nodes not told yet.
    faultPoint('before-publish');
    // Caches drop what the transaction changed before the use case answers, with the
    // connection already back in the pool (change-tracking.ts).
    await deliverChanges(db, committed.changes);
    return committed.result;
  }
}

const rolledBack = new WeakSet<object>();

/**
 * Whether `error`, thrown by withTransaction, failed the transaction before its COMMIT was
 * sent, so that nothing of it committed. False for a COMMIT whose answer was lost (the
 * connection died): it may have committed. Use cases that made an HSM object ahead of the
 * transaction destroy it only when this is true, and leave the rest to the reconciler.
 */
export function certainlyRolledBack(error: unknown): boolean {
  return typeof error === 'object' && error !== null && rolledBack.has(error);
}

/**
 * SQLSTATE of a pg error, if it is one. A Node system error is not, even where its code has a
 * SQLSTATE's shape: `EPIPE` (a write to a socket the server closed) is five capitals, and was
 * once taken for an unknown SQLSTATE and answered 500 during a store outage.
 */
export function sqlState(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && !('syscall' in error)) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

/** 40001 serialization_failure, 40P01 deadlock_detected: Postgres asks for the transaction to be re-run. */
export function isConflict(error: unknown): boolean {
  const state = sqlState(error);
  return state === '40001' || state === '40P01';
}

const unreachable = () => unavailable('The metadata store is not reachable.');

/**
 * SQLSTATEs that mean "the store cannot answer now" (a retry later may succeed): class 08
 * connection exceptions, 53 insufficient resources (too many connections, disk full),
 * 57P01–57P03 shutdown / starting up, 57014 a query cancelled by a timeout, 55P03 a lock
 * that could not be had.
 */
function isUnavailableState(state: string): boolean {
  return state.startsWith('08') || state.startsWith('53') || ['57P01', '57P02', '57P03', '57014', '55P03'].includes(state);
}

/** Socket errors (Node's `code`) of a connection to the store. */
const SOCKET_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  // Node's stream errors for a write to a socket already closed or ended.
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
  'ERR_SOCKET_CLOSED',
]);

/**
 * The one place that matches message text: pg and pg-pool raise these as plain `Error`s with
 * no SQLSTATE and no code (read in pg 8.23 lib/client.js and pg-pool 3.14 index.js), so the
 * message is all there is. Each means the connection was lost or never had, so the request
 * is answered 503. A pg upgrade that rewords one turns it back into a 500, which the
 * "store outage" tests in test/integration/store-errors.test.ts would show.
 */
const PG_CONNECTION_LOSS_MESSAGES = new Set([
  // pg-pool: no free client within connectionTimeoutMillis (pool full).
  'timeout exceeded when trying to connect',
  // pg-pool: a new client did not connect within connectionTimeoutMillis.
  'Connection terminated due to connection timeout',
  // pg client: its own connect timeout destroyed the socket.
  'timeout expired',
  // pg client: the socket ended (server gone, or the client ended) while queries were queued.
  'Connection terminated',
  'Connection terminated unexpectedly',
  // pg client: query_timeout passed with no answer.
  'Query read timeout',
  // pg client: queries on a client that already failed or closed.
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
  // pg-pool: the pool is shutting down.
  'Cannot use a pool after calling end on the pool',
]);

function isConnectionLoss(error: unknown): boolean {
  if (!(error instanceof Error) || error instanceof pg.DatabaseError) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') return SOCKET_ERROR_CODES.has(code);
  return PG_CONNECTION_LOSS_MESSAGES.has(error.message);
}

/**
 * Translates a store error into the answer the client gets, by SQLSTATE wherever pg gives one:
 * - connection trouble (SQLSTATE, socket code, or pg's code-less errors above) → 503;
 * - 40001 / 40P01 left after withTransaction's one re-run → 503 (the client may retry);
 * - 23505 unique violation → 409 Rejected.StateModifiedFailed: the writes that can collide
 *   on purpose (alias names, tags) resolve it in SQL with ON CONFLICT and answer their own
 *   code (AliasAlreadyExists); what is left is a collision of generated ids or a concurrent
 *   write Postgres refused, which a retry of the request resolves;
 * - class 22 data exceptions → 400 InvalidParameter (also done per query by StoreClient);
 * - anything else is returned as is (an internal failure, 500).
 */
export function translatePgError(error: unknown): unknown {
  if (error instanceof KmsError) return error;
  if (isConnectionLoss(error)) return unreachable();
  const state = sqlState(error);
  if (state !== undefined) {
    if (isUnavailableState(state)) return unreachable();
    if (state === '40001' || state === '40P01') {
      return unavailable('The request conflicted with a concurrent one; retry it.');
    }
    if (state === '23505') {
      return new KmsError('Rejected.StateModifiedFailed', 'The request conflicted with a concurrent change of the same resource; retry it.');
    }
    if (state.startsWith('22')) return invalidStoredValue();
  }
  return error;
}
