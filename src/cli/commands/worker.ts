import type { Command } from 'commander';
import { localConfig } from '../local-kms.js';

/**
 * `kms worker`: a BullMQ worker for every queue of jobs/registry.ts (material expiry,
 * rotation, key deletion, wrapping-key pool, reconciler, the repeatable sweeper) against the
 * same Postgres, Redis and HSM token as `kms serve`. Run as many as you like: every job is
 * idempotent.
 */
export function register(program: Command): void {
  program
    .command('worker')
    .description('run the job workers (DATABASE_URL, REDIS_URL and the HSM token must exist: see `kms hsm init`)')
    .action(async () => {
      const config = await localConfig();
      const [{ startJobWorkers }, { createKms }, { stopOnSignals }] = await Promise.all([
        import('../../jobs/workers.js'),
        import('../../kms.js'),
        import('../../main.js'),
      ]);
      const kms = await createKms(config);
      try {
        const workers = await startJobWorkers(kms);
        // The deployment lease (store/deployment-lease.ts): `kms restore` is refused while it is held.
        if (config.databaseUrl) await (await import('./serve.js')).holdLease(config.databaseUrl, 'worker').catch(async (error: unknown) => {
          await workers.close();
          throw error;
        });
        stopOnSignals(async () => {
          await workers.close();
          await kms.close();
        });
      } catch (error) {
        await kms.close();
        throw error;
      }
    });
}
