import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_EMBEDDED_PG_PORT, startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/store/embedded-postgres.js';

/** Holds `port` on 127.0.0.1 if it is free; resolves to undefined when something else has it. */
async function occupy(port: number): Promise<net.Server | undefined> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

describe('embedded Postgres (PGlite behind our wire-protocol front)', () => {
  const password = 'test-secret-0123456789';
  let dataDir: string;
  let running: EmbeddedPostgres | undefined;

  beforeAll(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kms-embedded-pg-'));
  });

  afterEach(async () => {
    // A test that failed half-way leaves its server running: stop it before the next one starts.
    await running?.stop();
    running = undefined;
  });

  afterAll(async () => {
    await running?.stop();
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('serves pg.Pool: DDL, transactions, FOR UPDATE, serialised writers; data survives a restart', async () => {
    running = await startEmbeddedPostgres({ dataDir, port: 0, password });
    expect(running.url).toMatch(/^postgres:\/\/postgres:[^@]+@127\.0\.0\.1:\d+\/postgres$/);

    let pool = new pg.Pool({ connectionString: running.url, max: 4 });
    try {
      await pool.query('CREATE TABLE quota (id text PRIMARY KEY, used int NOT NULL)');
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('INSERT INTO quota (id, used) VALUES ($1, $2)', ['kst-1', 0]);
        const locked = await client.query<{ used: number }>('SELECT used FROM quota WHERE id = $1 FOR UPDATE', ['kst-1']);
        expect(locked.rows).toEqual([{ used: 0 }]);
        await client.query('UPDATE quota SET used = used + 1 WHERE id = $1', ['kst-1']);
        await client.query('COMMIT');
      } finally {
        client.release();
      }

      // A rolled-back transaction leaves nothing behind.
      const rollback = await pool.connect();
      try {
        await rollback.query('BEGIN');
        await rollback.query('INSERT INTO quota (id, used) VALUES ($1, $2)', ['kst-rolled-back', 0]);
        await rollback.query('ROLLBACK');
      } finally {
        rollback.release();
      }

      // Concurrent read-modify-write under FOR UPDATE never loses an increment (PGlite
      // serialises transactions across connections; a real server would block on the row lock).
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          const c = await pool.connect();
          try {
            await c.query('BEGIN');
            const { rows } = await c.query<{ used: number }>('SELECT used FROM quota WHERE id = $1 FOR UPDATE', ['kst-1']);
            await c.query('UPDATE quota SET used = $2 WHERE id = $1', ['kst-1', (rows[0]?.used ?? 0) + 1]);
            await c.query('COMMIT');
          } finally {
            c.release();
          }
        }),
      );
      const { rows } = await pool.query<{ id: string; used: number }>('SELECT id, used FROM quota ORDER BY id');
      expect(rows).toEqual([{ id: 'kst-1', used: 9 }]);
    } finally {
      await pool.end();
    }

    await running.stop();
    running = undefined;

    // Same data dir, fresh process state: the committed rows are still there.
    running = await startEmbeddedPostgres({ dataDir, port: 0, password });
    pool = new pg.Pool({ connectionString: running.url, max: 4 });
    try {
      const { rows } = await pool.query<{ id: string; used: number }>('SELECT id, used FROM quota ORDER BY id');
      expect(rows).toEqual([{ id: 'kst-1', used: 9 }]);
    } finally {
      await pool.end();
    }
    await running.stop();
    running = undefined;
  });

  it('refuses a second server on the same data dir', async () => {
    running = await startEmbeddedPostgres({ dataDir, port: 0, password });
    await expect(startEmbeddedPostgres({ dataDir, port: 0, password })).rejects.toThrow(/already running/);
    await running.stop();
    running = undefined;
  });

  it('moves to the next port when the default one is taken', async () => {
    const blocker = await occupy(DEFAULT_EMBEDDED_PG_PORT);
    try {
      running = await startEmbeddedPostgres({ dataDir, password });
      const port = Number(new URL(running.url).port);
      expect(port).toBeGreaterThanOrEqual(DEFAULT_EMBEDDED_PG_PORT);
      expect(port).toBeLessThan(DEFAULT_EMBEDDED_PG_PORT + 10);
      if (blocker) expect(port).not.toBe(DEFAULT_EMBEDDED_PG_PORT);
      const pool = new pg.Pool({ connectionString: running.url, max: 1 });
      try {
        expect((await pool.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      } finally {
        await pool.end();
      }
      await running.stop();
      running = undefined;
    } finally {
      await new Promise<void>((resolve) => (blocker ? blocker.close(() => resolve()) : resolve()));
    }
  });

  it('refuses a client without the password, or with a wrong one (28P01), and serves one with it', async () => {
    running = await startEmbeddedPostgres({ dataDir, port: 0, password });
    const url = new URL(running.url);
    for (const candidate of ['', 'wrong-password']) {
      url.password = candidate;
      const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 5_000 });
      client.on('error', () => undefined);
      await expect(client.connect()).rejects.toMatchObject({ code: '28P01' });
      await client.end().catch(() => undefined);
    }
    const client = new pg.Client({ connectionString: running.url });
    await client.connect();
    try {
      expect((await client.query<{ superuser: string }>("SELECT current_setting('is_superuser') AS superuser")).rows).toHaveLength(1);
    } finally {
      await client.end();
    }
    await running.stop();
    running = undefined;
  });

  it('never interleaves connections: each of many concurrent parameterised queries gets its own answer', async () => {
    running = await startEmbeddedPostgres({ dataDir, port: 0, password });
    const pool = new pg.Pool({ connectionString: running.url, max: 16 });
    try {
      const answers = await Promise.all(
        Array.from({ length: 400 }, async (_, i) => {
          if (i % 4 === 0) {
            // A transaction in the middle of the stream keeps the others out until it ends.
            const c = await pool.connect();
            try {
              await c.query('BEGIN');
              const { rows } = await c.query<{ n: number }>('SELECT $1::int AS n', [i]);
              await c.query('COMMIT');
              return rows[0]?.n;
            } finally {
              c.release();
            }
          }
          return (await pool.query<{ n: number; s: string }>('SELECT $1::int AS n, $2::text AS s', [i, `q${i}`])).rows[0]?.n;
        }),
      );
      expect(answers).toEqual(Array.from({ length: 400 }, (_, i) => i));
    } finally {
      await pool.end();
    }
    await running.stop();
    running = undefined;
  });

  it('rolls back a connection that disconnects inside a transaction, and the next one goes on', async () => {
    running = await startEmbeddedPostgres({ dataDir, port: 0, password });
    const pool = new pg.Pool({ connectionString: running.url, max: 2 });
    try {
      await pool.query('CREATE TABLE IF NOT EXISTS abandoned (id text PRIMARY KEY)');
      const client = new pg.Client({ connectionString: running.url });
      client.on('error', () => undefined);
      await client.connect();
      await client.query('BEGIN');
      await client.query("INSERT INTO abandoned (id) VALUES ('left-open')");
      // The pool's query waits at the gate behind the open transaction…
      const waiting = pool.query<{ n: string }>('SELECT count(*) AS n FROM abandoned');
      // …until the holder goes away without COMMIT.
      (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      expect((await waiting).rows).toEqual([{ n: '0' }]);
    } finally {
      await pool.end();
    }
    await running.stop();
    running = undefined;
  });

  it('disconnects a connection that holds a transaction open and silent past the idle timeout', async () => {
    running = await startEmbeddedPostgres({ dataDir, port: 0, password, idleInTransactionTimeoutMs: 500 });
    const pool = new pg.Pool({ connectionString: running.url, max: 2 });
    try {
      await pool.query('CREATE TABLE IF NOT EXISTS idle_tx (id text PRIMARY KEY)');
      const holder = new pg.Client({ connectionString: running.url });
      const holderError = new Promise<Error>((resolve) => holder.on('error', resolve));
      await holder.connect();
      await holder.query('BEGIN');
      await holder.query("INSERT INTO idle_tx (id) VALUES ('never-committed')");
      // Another client is admitted once the silent holder is cut off, and sees nothing of it.
      expect((await pool.query<{ n: string }>('SELECT count(*) AS n FROM idle_tx')).rows).toEqual([{ n: '0' }]);
      expect((await holderError).message).toMatch(/idle-in-transaction timeout/);
      await holder.end().catch(() => undefined);
    } finally {
      await pool.end();
    }
    await running.stop();
    running = undefined;
  });
});
