/**
 * The reconciler queue: one pending run at a time (fixed job id), requested by every sweep.
 * The run (services/reconciler.ts) destroys HSM objects no committed row references and flags
 * rows whose object is missing; its result (destroyed, flagged, suspected) stays on the job
 * for a moment and in `reconcile_findings` for good.
 */
import type { Queue } from 'bullmq';
import { type ReconcileResult, reconcileHsmObjects } from '../services/reconciler.js';
import type { QueueDefinition } from './queue-definition.js';

export const RECONCILER_QUEUE = 'reconciler';
export const RECONCILE_JOB = 'reconcile';
export type ReconcileJob = Record<string, never>;

/** Like the pool requests (jobs/wrapping-pool.ts): a finished run must not block its id. */
export async function requestReconcile(queue: Queue<ReconcileJob>): Promise<void> {
  await queue.add(RECONCILE_JOB, {}, { jobId: RECONCILE_JOB, removeOnComplete: true, removeOnFail: true });
}

export const reconcilerQueue: QueueDefinition<ReconcileJob, []> = {
  name: RECONCILER_QUEUE,
  jobNames: [RECONCILE_JOB],
  concurrency: 1,
  schedule: ({ queue }) => requestReconcile(queue),
  processor:
    ({ deps }) =>
    (): Promise<ReconcileResult> =>
      reconcileHsmObjects(deps),
};
