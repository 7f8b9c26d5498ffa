/**
 * Key deletion at DeleteDate (ScheduleKeyDeletion, alibaba-api.md §3.1): a delayed job per key
 * and date, deterministic id, so a cancelled-and-rescheduled deletion's old job finds the
 * key's DeleteDate changed (or the key Enabled again) and does nothing. The processor and the
 * sweep call services/key-deletion.ts `deleteKeyIfDue` (its comment gives the crash order).
 */
import type { Job, Queue } from 'bullmq';
import type { Clock } from '../clock.js';
import type { ServiceDeps } from '../services/context.js';
import { type KeyDeletionOutcome, deleteKeyIfDue } from '../services/key-deletion.js';
import { listKeysDueForDeletion } from '../store/key-deletion.js';
import { type SweepResult, runBatchSweep } from './batch-sweep.js';
import { addDueJob, delayUntilDue } from './due-dates.js';
import type { QueueDefinition } from './queue-definition.js';

export const KEY_DELETION_QUEUE = 'key-deletion';
export const KEY_DELETION_JOB = 'delete-key';

export interface KeyDeletionJob {
  keyId: string;
  /** ISO-8601: the DeleteDate this job was scheduled for. */
  deleteAt: string;
}

/** BullMQ job ids may not contain ':'. */
export const keyDeletionJobId = (keyId: string, deleteAt: Date): string => `delete-${keyId}-${deleteAt.getTime()}`;

export async function scheduleKeyDeletion(queue: Queue<KeyDeletionJob>, clock: Clock, keyId: string, deleteAt: Date): Promise<void> {
  await addDueJob(queue, KEY_DELETION_JOB, { keyId, deleteAt: deleteAt.toISOString() }, keyDeletionJobId(keyId, deleteAt), clock, deleteAt);
}

/** The processor: a job that wakes before the DeleteDate by the service clock is delayed again. */
export function keyDeletionProcessor(deps: ServiceDeps) {
  return async (job: Job<KeyDeletionJob>, token?: string): Promise<KeyDeletionOutcome> => {
    const deleteAt = new Date(job.data.deleteAt);
    const outcome = await deleteKeyIfDue(deps, job.data.keyId, deleteAt);
    if (outcome === 'not-due' && token !== undefined) await delayUntilDue(job, token, deps.clock, deleteAt);
    if (outcome === 'deleted') deps.logger.info({ keyId: job.data.keyId, deleteDate: job.data.deleteAt }, 'key deleted at its DeleteDate');
    return outcome;
  };
}

/** Deletes every key whose DeleteDate has come by the service clock (the sweeper's part). */
export function runKeyDeletionSweep(deps: ServiceDeps, batchSize = 100): Promise<SweepResult<KeyDeletionOutcome>> {
  return runBatchSweep({
    list: (limit, exclude) => listKeysDueForDeletion(deps.db, deps.clock.now(), limit, exclude),
    idOf: (due) => due.keyId,
    apply: (due) => deleteKeyIfDue(deps, due.keyId, due.deleteDate),
    logger: deps.logger,
    what: 'key deletion',
    batchSize,
  });
}

/** The key-deletion queue (jobs/registry.ts). */
export const keyDeletionQueue: QueueDefinition<KeyDeletionJob, [keyId: string, deleteAt: Date]> = {
  name: KEY_DELETION_QUEUE,
  jobNames: [KEY_DELETION_JOB],
  concurrency: 2,
  schedule: ({ queue, clock }, keyId, deleteAt) => scheduleKeyDeletion(queue, clock, keyId, deleteAt),
  processor: ({ deps }) => keyDeletionProcessor(deps),
};
