import fs from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { EmbeddedWireServer } from './embedded/wire-server.js';
import { errnoCode } from '../errno.js';

/**
 * Embedded Postgres for the quickstart: PGlite (Postgres compiled to WASM, in this process)
 * behind our own wire-protocol front (store/embedded/), so the rest of the service talks to it
 * with `pg` over the wire exactly as it talks to a real server.
 *
 * What it guarantees (DESIGN.md, "Embedded Postgres for the quickstart"; issue 13):
 * - PGlite has one backend. The front admits one client connection's *round* at a time — from
 *   its first message until ReadyForQuery says the backend is idle with no transaction open —
 *   so statements and transactions of different connections never interleave, whatever the
 *   number of connections (pgbouncer's transaction-pooling rule). pglite-socket, used before,
 *   queued single messages and answered `Encrypt(A)` with key B under load.
 * - A connection that disconnects, or holds the gate silent for `idleInTransactionTimeoutMs`,
 *   is rolled back, and the next one goes on.
 * - Every client must present the password (the quickstart's local-services secret): the
 *   database runs as superuser, so an open port would let any local process rewrite
 *   `access_keys`. Cleartext over loopback, compared in constant time.
 * Limits: one statement runs at a time (throughput is one backend's); session state (SET,
 * named prepared statements, LISTEN) is shared by all connections — the service uses none, and
 * LISTEN/NOTIFY does not cross connections. It is for one host and the quickstart, not for
 * production.
 */

/** Options for {@link startEmbeddedPostgres}. */
export interface EmbeddedPostgresOptions {
  /** The service data dir; the database files live in `<dataDir>/pglite`. */
  dataDir: string;
  /** The password every client must send (the quickstart's local-services secret). */
  password: string;
  /**
   * TCP port. When omitted, 54329 is tried first and then the next few ports; when given, only
   * that port is used (0 lets the OS pick one).
   */
  port?: number;
  /** Address to bind; defaults to 127.0.0.1. */
  host?: string;
  /** Most client connections served at once (default 32). */
  maxConnections?: number;
  /** A connection holding the database silent for this long is disconnected and rolled back (default 15 s). */
  idleInTransactionTimeoutMs?: number;
}

/** A running embedded Postgres. */
export interface EmbeddedPostgres {
  /**
   * `postgres://postgres:<password>@HOST:PORT/postgres`, usable as `pg.Pool`'s
   * `connectionString`. It carries the secret: never log it.
   */
  url: string;
  /** The bound TCP port. */
  port: number;
  /** Closes the server (rolling back open rounds) and then the database; the data stays on disk. */
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
  if (opts.password.length === 0) throw new Error('The embedded Postgres needs a password.');
  const host = opts.host ?? '127.0.0.1';
  const pgDir = path.resolve(opts.dataDir, 'pglite');
  await fs.mkdir(pgDir, { recursive: true, mode: 0o700 });
  const lockPath = path.resolve(opts.dataDir, 'pglite.lock');
  await acquirePidLock(lockPath);

  let db: PGlite | undefined;
  try {
    db = await PGlite.create(pgDir);
    const openDb = db;
    const { server, port } = await listen(host, opts.port, () => {
      return new EmbeddedWireServer({
        db: openDb,
        password: opts.password,
        maxConnections: opts.maxConnections ?? 32,
        ...(opts.idleInTransactionTimeoutMs !== undefined ? { idleInTransactionTimeoutMs: opts.idleInTransactionTimeoutMs } : {}),
      });
    });
    let stopped: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      // Idempotent: a signal handler and a finally block may both call it.
      stopped ??= (async () => {
        try {
          // Resolves after every connection's open round is rolled back, so closing is safe.
          await server.stop();
          await openDb.close();
        } finally {
          await fs.rm(lockPath, { force: true });
        }
      })();
      return stopped;
    };
    const urlHost = host.includes(':') ? `[${host}]` : host;
    return { url: `postgres://postgres:${encodeURIComponent(opts.password)}@${urlHost}:${port}/postgres`, port, stop };
  } catch (error) {
    if (db && !db.closed) await db.close().catch(() => undefined);
    await fs.rm(lockPath, { force: true });
    throw error;
  }
}

async function listen(
  host: string,
  requestedPort: number | undefined,
  createServer: () => EmbeddedWireServer,
): Promise<{ server: EmbeddedWireServer; port: number }> {
  const candidates =
    requestedPort === undefined
      ? Array.from({ length: PORT_ATTEMPTS }, (_, i) => DEFAULT_EMBEDDED_PG_PORT + i)
      : [requestedPort];
  let lastError: unknown;
  for (const candidate of candidates) {
    const server = createServer();
    try {
      return { server, port: await server.listen(host, candidate) };
    } catch (error) {
      lastError = error;
      if (errnoCode(error) === 'EADDRINUSE' || errnoCode(error) === 'EACCES') continue;
      throw error;
    }
  }
  const tried = candidates.length === 1 ? `port ${candidates[0]}` : `ports ${candidates[0]}-${candidates.at(-1)}`;
  throw new Error(`Cannot start the embedded Postgres on ${host} (${tried} unavailable): ${errorMessage(lastError)}`);
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

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
