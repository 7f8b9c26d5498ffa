/**
 * The repeatable sweeper (DESIGN.md, Jobs): every KMS_SWEEP_INTERVAL_SECONDS it does what a
 * lost, failed or early job missed, each part on its own so one failing part (or key) never
 * stops the rest:
 * - expires imported material past its MaterialExpireTime (jobs/material-expiry.ts);
 * - rotates keys past their NextRotationDate (jobs/rotation.ts);
 * - deletes keys past their DeleteDate (jobs/key-deletion.ts);
 * - queues the cleanup of expired wrapping pairs and a pool refill (jobs/wrapping-pool.ts);
 * - queues a reconciler run (jobs/reconciler.ts).
 * Due-ness is the service clock's (deps.clock). Every effect is conditional and idempotent, so
 * a sweep racing a job, or two sweeps, apply it once.
 */
import type { Queue } from 'bullmq';
import { faultPoint, inFaultScope } from '../fault-points.js';
import type { ServiceDeps } from '../services/context.js';
import type { SweepResult } from './batch-sweep.js';
import { runKeyDeletionSweep } from './key-deletion.js';
import { type MaterialExpirySweep, runMaterialExpirySweep } from './material-expiry.js';
import type { KmsQueues } from './registry.js';
import type { QueueDefinition } from './queue-definition.js';
import { requestReconcile } from './reconciler.js';
import { runRotationSweep } from './rotation.js';
import { requestWrappingKeyCleanup, requestWrappingPoolRefill } from './wrapping-pool.js';

export const SWEEPER_QUEUE = 'sweeper';
export const SWEEPER_SCHEDULER_ID = 'sweep';
export type SweeperJob = Record<string, never>;

/** Upserts the repeatable job (one scheduler id, so every worker that starts agrees on it). */
export async function scheduleSweeper(queue: Queue<SweeperJob>, everyMs: number): Promise<void> {
  await queue.upsertJobScheduler(SWEEPER_SCHEDULER_ID, { every: everyMs }, { name: SWEEPER_SCHEDULER_ID, data: {} });
}

export interface SweepReport {
  materialExpiry?: MaterialExpirySweep;
  rotation?: SweepResult<string>;
  keyDeletion?: SweepResult<string>;
  /** Parts that failed as a whole (e.g. the store was away); the next sweep runs them again. */
  failedParts: string[];
}

/**
 * One sweep. Exported so tests (and the time machine) can run it with the clock they set,
 * without waiting for the repeatable job.
 */
export async function runSweep(deps: ServiceDeps, queues: Pick<KmsQueues, 'wrappingPool' | 'reconciler'>): Promise<SweepReport> {
  const report: SweepReport = { failedParts: [] };
  const part = async <T>(name: string, run: () => Promise<T>): Promise<T | undefined> => {
    try {
      // KMS_FAULT_POINTS (tests only): each part is the scope of its points, like the queue of its name.
      return await inFaultScope(name, async () => {
        const done = await run();
        faultPoint('after-commit');
        return done;
      });
    } catch (error) {
      report.failedParts.push(name);
      deps.logger.warn({ part: name, err: error instanceof Error ? error.message : String(error) }, 'sweep part failed; the next sweep runs it again');
      return undefined;
    }
  };
  report.materialExpiry = await part('material-expiry', () => runMaterialExpirySweep(deps));
  report.rotation = await part('rotation', () => runRotationSweep(deps));
  report.keyDeletion = await part('key-deletion', () => runKeyDeletionSweep(deps));
  await part('wrapping-pool', async () => {
    await requestWrappingKeyCleanup(queues.wrappingPool);
    await requestWrappingPoolRefill(queues.wrappingPool);
  });
  await part('reconciler', () => requestReconcile(queues.reconciler));
  return report;
}

/** The sweeper queue (jobs/registry.ts): every process that starts workers (re-)installs the repeatable job. */
export const sweeperQueue: QueueDefinition<SweeperJob, [everyMs: number]> = {
  name: SWEEPER_QUEUE,
  jobNames: [SWEEPER_SCHEDULER_ID],
  concurrency: 1,
  schedule: ({ queue }, everyMs) => scheduleSweeper(queue, everyMs),
  processor:
    ({ deps, queues }) =>
    (): Promise<SweepReport> =>
      runSweep(deps, queues),
  onWorkersStarted: async ({ queue }, options) => {
    if (options.sweeper) await scheduleSweeper(queue, options.sweepEveryMs);
  },
  ensureSchedule: async ({ queue }, options) => {
    if (!options.sweeper || (await queue.getJobScheduler(SWEEPER_SCHEDULER_ID))) return false;
    await scheduleSweeper(queue, options.sweepEveryMs);
    return true;
  },
};
