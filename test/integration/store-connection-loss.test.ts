import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsError } from '../../src/domain/errors.js';
import { type Db, createDb, withTransaction } from '../../src/store/db.js';
import { type PrivatePostgres, createDatabase, startPrivatePostgres } from '../helpers/private-postgres.js';

/**
 * Issue 19 item 0, at the store: a connection checked out for a transaction dies while the use
 * case is away (say, in an HSM call) with no query of its own running. pg emits 'error' on the
 * client then; without a listener Node would end the process (vitest reports it as an
 * unhandled error). withTransaction must answer 503 and the pool must not hand the dead client
 * out again: once PostgreSQL is back, the next transaction works.
 */
let cluster: PrivatePostgres;
let db: Db;

beforeAll(async () => {
  cluster = await startPrivatePostgres();
  db = createDb(await createDatabase(cluster, 'loss'), 2);
}, 60_000);

afterAll(async () => {
  await db?.end().catch(() => undefined);
  await cluster?.destroy();
}, 60_000);

describe('a pool client that loses its server between two queries of a transaction', () => {
  it('does not end the process; the transaction answers 503; the pool serves again after a restart', async () => {
    const failure = await withTransaction(db, async (tx) => {
      await tx.query('SELECT 1');
      // The store goes away while this transaction waits on something else.
      await cluster.stop('fast');
      await new Promise<void>((resolve) => {
        const poll = () => ((tx as unknown as { _queryable: boolean })._queryable ? setTimeout(poll, 20) : resolve());
        poll();
      });
      await tx.query('SELECT 2');
    }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(KmsError);
    expect((failure as KmsError).code).toBe('ServiceUnavailableTemporary');
    await cluster.start();
    for (let i = 0; i < 4; i++) {
      expect(await withTransaction(db, async (tx) => (await tx.query<{ n: number }>('SELECT $1::int AS n', [i])).rows[0]!.n)).toBe(i);
    }
  }, 60_000);
});
