import pg from 'pg';

/**
 * Who is running on a database (issue 19, backup and restore): every `kms serve` and `kms worker`
 * holds a **shared** session-level advisory lock on its database for as long as it lives, on one
 * connection of its own; `kms restore` takes the same lock **exclusively** (and keeps it while it
 * restores), so it is refused while any of them runs, and none of them starts while it restores.
 *
 * Why this and not a runtime file or a Redis key with a TTL: the lock lives in the one thing every
 * node of a deployment shares and that restore overwrites (the database), it needs no clock and no
 * TTL to expire, and PostgreSQL drops it the moment its holder's connection ends — a SIGKILLed
 * process, a lost host — so it is never stale. A node whose lease connection drops (PostgreSQL
 * restarted) takes the lock again when it reconnects; between the two a restore could start, and
 * the node then says so and keeps retrying (restore itself refuses a database that has tables
 * unless told to replace them).
 */
const LEASE_CLASS = 0x6b6d73; // "kms"
const LEASE_OBJECT = 19;

export const LEASE_APPLICATION_NAME = 'hsm-kms';

export interface DeploymentLease {
  close(): Promise<void>;
}

/**
 * Holds the shared lease for `role` (`serve`, `worker`) until close().
 * @throws Error when a `kms restore` holds the database (the exclusive lock).
 */
export async function holdDeploymentLease(connectionString: string, role: string, warn: (message: string) => void): Promise<DeploymentLease> {
  let closed = false;
  let client: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;
  const connect = async (): Promise<void> => {
    const next = new pg.Client({ connectionString, application_name: `${LEASE_APPLICATION_NAME} ${role} pid ${process.pid}` });
    // A lease connection that dies must never end the process: reconnect and take it again.
    next.on('error', () => undefined);
    next.on('end', () => {
      if (closed || client !== next) return;
      client = undefined;
      warn('deployment lease: the PostgreSQL connection ended; taking the lease again');
      schedule();
    });
    await next.connect();
    const { rows } = await next.query<{ held: boolean }>('SELECT pg_try_advisory_lock_shared($1, $2) AS held', [LEASE_CLASS, LEASE_OBJECT]);
    if (!rows[0]?.held) {
      await next.end().catch(() => undefined);
      throw new Error('a `kms restore` is running on this database: start again when it has finished.');
    }
    client = next;
  };
  const schedule = () => {
    retry = setTimeout(() => {
      if (closed) return;
      connect().catch((error: unknown) => {
        warn(`deployment lease: not taken again yet (${error instanceof Error ? error.message : String(error)}); retrying in 1 s`);
        schedule();
      });
    }, 1_000);
    retry.unref();
  };
  await connect();
  return {
    async close() {
      closed = true;
      if (retry) clearTimeout(retry);
      await client?.end().catch(() => undefined);
    },
  };
}

/** The processes holding the lease on this database, as `pg_stat_activity` names them. */
export interface LeaseHolder {
  applicationName: string;
  clientAddress: string | null;
}

/**
 * Takes the lease exclusively on `client`'s database (kept until that session ends) or says who
 * holds it.
 */
export async function takeExclusiveLease(client: pg.Client): Promise<{ taken: true } | { taken: false; holders: LeaseHolder[] }> {
  const { rows } = await client.query<{ held: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS held', [LEASE_CLASS, LEASE_OBJECT]);
  if (rows[0]?.held) return { taken: true };
  const holders = await client.query<{ application_name: string; client_addr: string | null }>(
    `SELECT a.application_name, host(a.client_addr) AS client_addr
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [LEASE_CLASS, LEASE_OBJECT],
  );
  return { taken: false, holders: holders.rows.map((r) => ({ applicationName: r.application_name, clientAddress: r.client_addr })) };
}
