import fs from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

/**
 * Embedded Postgres for the quickstart: PGlite (Postgres compiled to WASM, in this process)
 * behind pglite-socket, so the rest of the service talks to it with `pg` over the wire exactly
 * as it talks to a real server.
 *
 * Limits (DESIGN.md, "Embedded Postgres for the quickstart"): PGlite has one backend, so
 * transactions from different connections are serialised, never interleaved; LISTEN/NOTIFY
 * does not cross connections. It is for one host and the quickstart, not for production.
 */

/** Options for {@link startEmbeddedPostgres}. */
export interface EmbeddedPostgresOptions {
  /** The service data dir; the database files live in `<dataDir>/pglite`. */
  dataDir: string;
  /**
   * TCP port. When omitted, 54329 is tried first and then the next few ports; when given, only
   * that port is used (0 lets the OS pick one).
   */
  port?: number;
  /** Address to bind; defaults to 127.0.0.1 (the database has no password). */
  host?: string;
  /** Most client connections served at once (default 32); `pg.Pool` sizes must stay below it. */
  maxConnections?: number;
}

/** A running embedded Postgres. */
export interface EmbeddedPostgres {
  /** `postgres://postgres@HOST:PORT/postgres`, usable as `pg.Pool`'s `connectionString`. */
  url: string;
  /** Closes the socket server and then the database cleanly; the data stays on disk. */
  stop(): Promise<void>;
}

/** Default port: next to 5432 but unlikely to collide with a real server. */
export const DEFAULT_EMBEDDED_PG_PORT = 54329;
const PORT_ATTEMPTS = 10;

/**
 * Starts PGlite with its data under `<dataDir>/pglite` and serves it on `host:port`.
 *
 * Only one process may open a PGlite data dir at a time (two would corrupt it), so a pid lock
 * file `<dataDir>/pglite.lock` guards it; a lock whose process is gone is taken over.
 *
 * @returns the connection URL and a `stop()` that closes the server and the database.
 */
export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const host = opts.host ?? '127.0.0.1';
  const pgDir = path.resolve(opts.dataDir, 'pglite');
  await fs.mkdir(pgDir, { recursive: true, mode: 0o700 });
  const lockPath = path.resolve(opts.dataDir, 'pglite.lock');
  await acquirePidLock(lockPath);

  let db: PGlite | undefined;
  try {
    db = await PGlite.create(pgDir);
    const { server, port } = await listen(db, host, opts.port, opts.maxConnections ?? 32);
    const openDb = db;
    let stopped: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      // Idempotent: a signal handler and a finally block may both call it.
      stopped ??= (async () => {
        try {
          await server.stop();
          await waitForQueueToDrain(server);
          await openDb.close();
        } finally {
          await fs.rm(lockPath, { force: true });
        }
      })();
      return stopped;
    };
    const urlHost = host.includes(':') ? `[${host}]` : host;
    return { url: `postgres://postgres@${urlHost}:${port}/postgres`, stop };
  } catch (error) {
    if (db && !db.closed) await db.close().catch(() => undefined);
    await fs.rm(lockPath, { force: true });
    throw error;
  }
}

async function listen(
  db: PGlite,
  host: string,
  requestedPort: number | undefined,
  maxConnections: number,
): Promise<{ server: PGLiteSocketServer; port: number }> {
  const candidates =
    requestedPort === undefined
      ? Array.from({ length: PORT_ATTEMPTS }, (_, i) => DEFAULT_EMBEDDED_PG_PORT + i)
      : [requestedPort];
  let lastError: unknown;
  for (const candidate of candidates) {
    // A server object cannot be restarted after a failed listen, so each attempt gets its own.
    // maxConnections defaults to 1 in pglite-socket, which would starve any pool.
    const server = new PGLiteSocketServer({ db, host, port: candidate, maxConnections });
    try {
      await server.start();
    } catch (error) {
      lastError = error;
      await server.stop().catch(() => undefined);
      if (errnoCode(error) === 'EADDRINUSE' || errnoCode(error) === 'EACCES') continue;
      throw error;
    }
    const conn = server.getServerConn();
    const port = Number(conn.slice(conn.lastIndexOf(':') + 1));
    if (!Number.isInteger(port) || port <= 0) {
      await server.stop();
      throw new Error(`pglite-socket reported an unexpected address: ${conn}`);
    }
    return { server, port };
  }
  const tried = candidates.length === 1 ? `port ${candidates[0]}` : `ports ${candidates[0]}-${candidates.at(-1)}`;
  throw new Error(`Cannot start the embedded Postgres on ${host} (${tried} unavailable): ${errorMessage(lastError)}`);
}

/**
 * server.stop() detaches handlers without waiting, and a detaching handler may still roll back
 * its open transaction; closing the database under it would fail, so wait for that first.
 */
async function waitForQueueToDrain(server: PGLiteSocketServer): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    await new Promise((resolve) => setImmediate(resolve));
    if (server.getStats().queuedQueries === 0 && !server.db.isInTransaction()) return;
    if (Date.now() > deadline) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Creates `lockPath` holding our pid; takes over a lock whose owner no longer runs. */
async function acquirePidLock(lockPath: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      await fs.writeFile(lockPath, String(process.pid), { flag: 'wx', mode: 0o600 });
      return;
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw error;
    }
    const owner = Number((await fs.readFile(lockPath, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
      throw new Error(
        `The embedded Postgres data in ${path.dirname(lockPath)} is in use by process ${owner}; ` +
          'stop it first, or set DATABASE_URL to use a Postgres server.',
      );
    }
    if (owner === process.pid) {
      throw new Error(`The embedded Postgres in ${path.dirname(lockPath)} is already running in this process.`);
    }
    // Stale: its process is gone.
    await fs.rm(lockPath, { force: true });
  }
  throw new Error(`Cannot take the embedded Postgres lock ${lockPath}.`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return errnoCode(error) === 'EPERM';
  }
}

function errnoCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
