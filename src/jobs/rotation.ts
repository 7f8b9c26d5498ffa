/**
 * Automatic rotation (seed 002): a delayed job per key at its NextRotationDate, with a
 * deterministic id per (key, date) so rescheduling the same date is a no-op and a job left
 * from an older date finds the key's date moved and does nothing. The sweeper finds anything
 * due that a lost job missed.
 */
import type { Queue } from 'bullmq';
import type { Clock } from '../clock.js';

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
  await queue.add(
    ROTATION_JOB,
    { keyId, dueAt: dueAt.toISOString() },
    { jobId: rotationJobId(keyId, dueAt), delay: Math.max(0, dueAt.getTime() - clock.now().getTime()) },
  );
}
