/**
 * Automatic rotation (seed 002): a delayed job per key at its NextRotationDate, with a
 * deterministic id per (key, date) so rescheduling the same date is a no-op and a job left
 * from an older date finds the key's date moved and does nothing. The processor and the
 * sweeper's rotation sweep call services/rotation.ts `rotateKeyIfDue`, the same rotation
 * CreateKeyVersion runs; its conditional update on NextRotationDate makes two workers, a
 * retry or a restart create one version per due date.
 */
import type { Job, Queue } from 'bullmq';
import type { Clock } from '../clock.js';
import type { ServiceDeps } from '../services/context.js';
import { type RotationOutcome, listKeysDueForRotation, rotateKeyIfDue } from '../services/rotation.js';
import { type SweepResult, runBatchSweep } from './batch-sweep.js';
import { addDueJob, delayUntilDue } from './due-dates.js';
import type { QueueDefinition } from './queue-definition.js';

export const ROTATION_QUEUE = 'rotation';
export const ROTATION_JOB = 'rotate-key';

export interface RotationJob {
  keyId: string;
  /** ISO-8601: the NextRotationDate this job was scheduled for. */
  dueAt: string;
}

/** BullMQ job ids may not contain ':'. */
export const rotationJobId = (keyId: string, dueAt: Date): string => `rotate-${keyId}-${dueAt.getTime()}`;

export async function scheduleRotation(queue: Queue<RotationJob>, clock: Clock, keyId: string, dueAt: Date): Promise<void> {
  await addDueJob(queue, ROTATION_JOB, { keyId, dueAt: dueAt.toISOString() }, rotationJobId(keyId, dueAt), clock, dueAt);
}

/**
 * The processor. 'not-due' (a worker whose clock is behind the scheduler's) is delayed again;
 * 'refused' (the quota) is recorded on the key by the service and left to the next sweep;
 * 'stale' and 'suspended' are done (EnableKey schedules the rotation that fell due meanwhile).
 */
export function rotationProcessor(deps: ServiceDeps) {
  return async (job: Job<RotationJob>, token?: string): Promise<RotationOutcome> => {
    const dueAt = new Date(job.data.dueAt);
    const outcome = await rotateKeyIfDue(deps, job.data.keyId, dueAt);
    if (outcome === 'not-due' && token !== undefined) await delayUntilDue(job, token, deps.clock, dueAt);
    if (outcome === 'rotated' || outcome === 'refused') deps.logger.info({ keyId: job.data.keyId, dueAt: job.data.dueAt, outcome }, 'automatic rotation');
    return outcome;
  };
}

/** Rotates every key whose NextRotationDate has come by the service clock (the sweeper's part). */
export function runRotationSweep(deps: ServiceDeps, batchSize = 100): Promise<SweepResult<RotationOutcome>> {
  return runBatchSweep({
    list: (limit, exclude) => listKeysDueForRotation(deps.db, deps.clock.now(), limit, exclude),
    idOf: (due) => due.keyId,
    apply: (due) => rotateKeyIfDue(deps, due.keyId, due.nextRotationDate),
    logger: deps.logger,
    what: 'automatic rotation',
    batchSize,
  });
}

/** The rotation queue (jobs/registry.ts). */
export const rotationQueue: QueueDefinition<RotationJob, [keyId: string, dueAt: Date]> = {
  name: ROTATION_QUEUE,
  jobNames: [ROTATION_JOB],
  concurrency: 4,
  schedule: ({ queue, clock }, keyId, dueAt) => scheduleRotation(queue, clock, keyId, dueAt),
  processor: ({ deps }) => rotationProcessor(deps),
};
