import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsError } from '../../src/domain/errors.js';
import { getAccessKey, insertAccessKey } from '../../src/store/access-keys.js';
import { getAlias } from '../../src/store/aliases.js';
import { type Db, createDb, translatePgError, withTransaction } from '../../src/store/db.js';
import { getVersion } from '../../src/store/versions.js';
import { createTestDatabase } from '../helpers/database.js';

/**
 * Issue 13: what Postgres failures answer. Everything runs against the real server; outages
 * are made real too (a closed port, a full pool, a proxy whose sockets are cut mid-query).
 */
let databaseUrl: string;
let db: Db;
/** A second, independent connection: the "other request" of the conflict tests. */
let other: pg.Client;

beforeAll(async () => {
  databaseUrl = await createTestDatabase();
  db = createDb(databaseUrl, 4);
  other = new pg.Client({ connectionString: databaseUrl });
  await other.connect();
  await other.query('CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)');
  await other.query('INSERT INTO counters VALUES (1, 0), (2, 0)');
});

afterAll(async () => {
  await other?.end();
  await db?.end();
});

/** What the client would be told: code and status kind of the translated error. */
const answer = (error: unknown) => {
  const translated = translatePgError(error);
  return translated instanceof KmsError ? `${translated.code} ${translated.kind}` : 'untranslated';
};
const failureOf = async (promise: Promise<unknown>): Promise<unknown> => {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a failure');
};
const UNAVAILABLE = 'ServiceUnavailableTemporary unavailable';

async function until(condition: () => Promise<boolean>, what: string, deadlineMs = 10_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('data exceptions (SQLSTATE class 22) are InvalidParameter, without SQL or values', () => {
  it('a NUL byte reaching a query (22021)', async () => {
    const error = await failureOf(getAlias(db, 'alias/nul\u0000here'));
    expect(error).toBeInstanceOf(KmsError);
    expect([(error as KmsError).code, (error as KmsError).kind]).toEqual(['InvalidParameter', 'client']);
    expect((error as KmsError).message).not.toMatch(/nul|alias|SELECT|0x00|UTF8/i);
  });

  it('text that is not a uuid for a uuid column (22P02), inside a transaction too', async () => {
    expect(answer(await failureOf(getVersion(db, 'not-a-uuid')))).toBe('InvalidParameter client');
    const inTx = await failureOf(withTransaction(db, (tx) => getVersion(tx, 'not-a-uuid')));
    expect((inTx as KmsError).code).toBe('InvalidParameter');
    // The connection went back to the pool in a usable state.
    expect((await db.query('SELECT 1 AS one')).rows[0].one).toBe(1);
  });
});

describe('conflicts: 40001 / 40P01 re-run the transaction once, then answer 503', () => {
  it('a real serialization failure (a row updated under a REPEATABLE READ snapshot) is re-run and succeeds', async () => {
    let attempts = 0;
    const result = await withTransaction(db, async (tx) => {
      attempts++;
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      await tx.query('SELECT n FROM counters WHERE id = 1');
      // Another request commits a change to the row after this snapshot, in the first attempt only.
      if (attempts === 1) await other.query('UPDATE counters SET n = n + 1 WHERE id = 1');
      const { rows } = await tx.query<{ n: number }>('UPDATE counters SET n = n + 10 WHERE id = 1 RETURNING n');
      return rows[0]!.n;
    });
    expect([attempts, result]).toEqual([2, 11]);
  });

  it('a real deadlock between two clients (40P01) is re-run and succeeds', async () => {
    let attempts = 0;
    let otherTx: Promise<unknown> | undefined;
    await withTransaction(db, async (tx) => {
      attempts++;
      // This side detects the deadlock first, so it is the one Postgres aborts.
      await tx.query("SET LOCAL deadlock_timeout = '50ms'");
      await tx.query('SELECT * FROM counters WHERE id = 1 FOR UPDATE');
      if (attempts === 1) {
        await other.query('BEGIN');
        await other.query("SET LOCAL deadlock_timeout = '30s'");
        await other.query('SELECT * FROM counters WHERE id = 2 FOR UPDATE');
        // The other side now waits for row 1 (held here) …
        otherTx = other.query('SELECT * FROM counters WHERE id = 1 FOR UPDATE').then(() => other.query('COMMIT'));
        const { rows: pids } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        await until(async () => {
          const { rows } = await tx.query('SELECT 1 FROM pg_locks WHERE NOT granted AND $1 = ANY(pg_blocking_pids(pid))', [pids[0]!.pid]);
          return rows.length > 0;
        }, 'the other transaction to wait for row 1');
      }
      // … and this side for row 2 (held there): a deadlock in the first attempt.
      await tx.query('SELECT * FROM counters WHERE id = 2 FOR UPDATE');
    });
    await otherTx;
    expect(attempts).toBe(2);
  });

  it('a conflict in the re-run too answers 503', async () => {
    let attempts = 0;
    const error = await failureOf(
      withTransaction(db, async (tx) => {
        attempts++;
        await tx.query("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$");
      }),
    );
    expect([attempts, answer(error)]).toEqual([2, UNAVAILABLE]);
  });

  it('a callback with effects outside the database is not re-run (rerunOnConflict: false)', async () => {
    let attempts = 0;
    const error = await failureOf(
      withTransaction(
        db,
        async (tx) => {
          attempts++;
          await tx.query("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$");
        },
        { rerunOnConflict: false },
      ),
    );
    expect([attempts, answer(error)]).toEqual([1, UNAVAILABLE]);
  });
});

describe('unique violations (23505) nobody resolved answer 409, not 500', () => {
  it('a second access key with the same id', async () => {
    const row = { id: 'LTAIduplicate0000000000', sealedSecret: Buffer.from('sealed'), role: 'admin' as const, instanceIds: null, description: '' };
    await insertAccessKey(db, row);
    const error = await failureOf(withTransaction(db, (tx) => insertAccessKey(tx, row)));
    expect([(error as KmsError).code, (error as KmsError).kind]).toEqual(['Rejected.StateModifiedFailed', 'client']);
    expect((error as KmsError).message).not.toContain(row.id);
  });
});

describe('an unreachable store answers 503', () => {
  it('a closed port (ECONNREFUSED), for pool queries and transactions', async () => {
    const closedPort = await unusedPort();
    const unreachable = createDb(`postgres://postgres@127.0.0.1:${closedPort}/none`, 1);
    try {
      expect(answer(await failureOf(getAccessKey(unreachable, 'LTAIx')))).toBe(UNAVAILABLE);
      expect(answer(await failureOf(withTransaction(unreachable, (tx) => getAccessKey(tx, 'LTAIx'))))).toBe(UNAVAILABLE);
    } finally {
      await unreachable.end();
    }
  });

  it('a full pool whose wait for a connection times out (pg-pool, no SQLSTATE)', async () => {
    const small = createDb(databaseUrl, 1, { connectionTimeoutMillis: 100 });
    const held = await small.connect();
    try {
      const error = await failureOf(small.query('SELECT 1'));
      expect((error as Error).message).toBe('timeout exceeded when trying to connect');
      expect(answer(error)).toBe(UNAVAILABLE);
      expect(answer(await failureOf(withTransaction(small, async () => undefined)))).toBe(UNAVAILABLE);
    } finally {
      held.release();
      await small.end();
    }
  });

  it('a query with no answer within query_timeout (pg, no SQLSTATE)', async () => {
    const slow = createDb(databaseUrl, 1, { queryTimeoutMillis: 100 });
    try {
      const error = await failureOf(slow.query('SELECT pg_sleep(2)'));
      expect((error as Error).message).toBe('Query read timeout');
      expect(answer(error)).toBe(UNAVAILABLE);
    } finally {
      await slow.end();
    }
  });

  it('a connection cut in the middle of a query ("Connection terminated unexpectedly", no SQLSTATE)', async () => {
    const target = new URL(databaseUrl);
    const sockets = new Set<net.Socket>();
    const proxy = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const viaProxy = new URL(databaseUrl);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String((proxy.address() as net.AddressInfo).port);
    const cut = createDb(viaProxy.toString(), 1);
    const marker = `cut-${Date.now()}-${process.pid}`;
    try {
      const running = failureOf(cut.query(`SELECT pg_sleep(30), '${marker}'`));
      await until(async () => {
        const { rows } = await other.query("SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1", [`%'${marker}'%`]);
        return rows.length > 0;
      }, 'the query to run on the server');
      for (const s of sockets) s.destroy();
      const error = await running;
      expect((error as Error).message).toBe('Connection terminated unexpectedly');
      expect(answer(error)).toBe(UNAVAILABLE);
    } finally {
      // The server-side query outlives the cut socket: stop it (only this test's, by its marker).
      await other.query('SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()', [`%'${marker}'%`]);
      await cut.end().catch(() => undefined);
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });
});

describe('socket errors are connection losses, whatever their code looks like', () => {
  it('a real EPIPE (a write to a socket the server closed) is 503, not an unknown SQLSTATE and a 500', async () => {
    // EPIPE is five capitals, the shape of a SQLSTATE: it once was answered 500 InternalFailure
    // when a node wrote to a connection the stopping store had closed (store-outage-nodes).
    // A server that closes each connection at once; the client writes on after the close.
    const closing = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => closing.listen(0, '127.0.0.1', resolve));
    const epipe = await new Promise<Error>((resolve) => {
      const socket = net.connect({ port: (closing.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
      socket.once('error', resolve);
      socket.once('end', function writeOn() {
        if (!socket.destroyed) socket.write(Buffer.alloc(65_536), () => setTimeout(writeOn, 5));
      });
      socket.resume();
    });
    await new Promise<void>((resolve) => closing.close(() => resolve()));
    expect((epipe as { code?: string }).code).toBe('EPIPE');
    expect(answer(epipe)).toBe(UNAVAILABLE);
  });
});

async function unusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
