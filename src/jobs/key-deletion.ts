/**
 * Key deletion at DeleteDate (ScheduleKeyDeletion, alibaba-api.md §3.1): a delayed job per key
 * and date, deterministic id, so a cancelled-and-rescheduled deletion's old job finds the
 * key's DeleteDate changed (or the key Enabled again) and does nothing. The sweeper finds
 * anything due that a lost job missed.
 */
import type { Queue } from 'bullmq';
import type { Clock } from '../clock.js';

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
  await queue.add(
    KEY_DELETION_JOB,
    { keyId, deleteAt: deleteAt.toISOString() },
    { jobId: keyDeletionJobId(keyId, deleteAt), delay: Math.max(0, deleteAt.getTime() - clock.now().getTime()) },
  );
}
