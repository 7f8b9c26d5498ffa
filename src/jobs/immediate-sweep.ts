/**
 * One sweep now, besides the repeatable one (issue 14 §4): after `kms clock` moves the service
 * clock, the work that fell due (rotations, material expiries, key deletions, expired import
 * tokens) must not wait for the next KMS_SWEEP_INTERVAL_SECONDS. The delayed jobs scheduled for
 * that work were given wall-clock delays and still wait them out; the sweep, which compares
 * with the service clock, is what catches them up (they then find their work done: stale).
 */
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { SWEEPER_SCHEDULER_ID, type SweeperJob } from './sweeper.js';

/** The id prefix of one-off sweeps (their job name is the sweeper's own: one processor runs both). */
export const IMMEDIATE_SWEEP_ID_PREFIX = 'sweep-now';

/** Queues a one-off sweep with a unique id (so it never merges with another); returns the id. */
export async function requestImmediateSweep(queue: Queue<SweeperJob>): Promise<string> {
  // BullMQ job ids may not contain ':'.
  const jobId = `${IMMEDIATE_SWEEP_ID_PREFIX}-${randomUUID()}`;
  await queue.add(SWEEPER_SCHEDULER_ID, {}, { jobId });
  return jobId;
}
