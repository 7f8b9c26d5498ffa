import type { Command } from 'commander';
import { startJobWorkers } from '../../jobs/workers.js';
import { createKms } from '../../kms.js';
import { stopOnSignals } from '../../main.js';
import { localConfig } from '../local-kms.js';

/**
 * `kms worker`: a BullMQ worker for every queue of jobs/registry.ts (material expiry,
 * rotation, key deletion, wrapping-key pool, reconciler, the repeatable sweeper) against the
 * same Postgres, Redis and HSM token as `kms serve`. Run as many as you like: every job is
 * idempotent.
 */
export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description('run the job workers (DATABASE_URL, REDIS_URL and the HSM token must exist: see `kms hsm init`)')
    .action(async () => {
      const config = await localConfig();
      const kms = await createKms(config);
      try {
        const workers = await startJobWorkers(kms);
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
