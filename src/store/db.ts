import pg from 'pg';
import { KmsError, unavailable } from '../domain/errors.js';

export type Db = pg.Pool;
export type Queryable = pg.Pool | pg.PoolClient;

export function createDb(connectionString: string, max = 10): Db {
  // Bounded waits: a store that stops answering turns into a 503, never a hung request.
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: 5_000, query_timeout: 30_000 });
  // An idle client losing its server must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  return pool;
}

/** Runs `fn` in one transaction (one per use case); rolls back on any error. */
export async function withTransaction<T>(db: Db, fn: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await db.connect();
  } catch (error) {
    throw translatePgError(error);
  }
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw translatePgError(error);
  } finally {
    client.release();
  }
}

/** SQLSTATE of a pg error, if it is one. */
export function sqlState(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

/** Translates by SQLSTATE, never by message text: connection trouble is retryable. */
export function translatePgError(error: unknown): unknown {
  if (error instanceof KmsError) return error;
  const state = sqlState(error);
  if (state?.startsWith('08') || state === '57P01' || state === '57P03' || state === '53300') {
    return unavailable('The metadata store is not reachable.');
  }
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT') {
      return unavailable('The metadata store is not reachable.');
    }
  }
  return error;
}
