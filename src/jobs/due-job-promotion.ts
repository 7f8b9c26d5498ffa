/**
 * After the time machine moves the service clock (issue 14 §4), the delayed jobs whose date has
 * come by the new service time are promoted to run now. Their BullMQ delays are wall-clock (the
 * distance to their date on the service clock when they were scheduled), so unpromoted they
 * would wait out days of real time — and, holding their deterministic ids, block a re-schedule
 * for the same date: EnableKey's rotation of a key that was suspended over its due date would
 * not run until then. Promoted, each runs through its own processor, which asks the service
 * clock: the work is done, or found done already (stale), or found not yet due (delayed again).
 * The sweep `kms clock` queues next catches whatever no job stands for.
 */
import type { Job, Queue } from 'bullmq';
import type { KeyDeletionJob } from './key-deletion.js';
import type { MaterialExpiryJob } from './material-expiry.js';
import type { KmsQueues } from './registry.js';
import type { RotationJob } from './rotation.js';

/** The queues whose jobs wait for a date; each job's data carries that date (service time). */
export type DatedQueues = Pick<KmsQueues, 'rotation' | 'keyDeletion' | 'materialExpiry'>;

/** How many delayed jobs are read per round trip (a test rig holds a few; production never promotes). */
const PAGE_SIZE = 500;

export interface PromotedJobs {
  rotation: number;
  keyDeletion: number;
  materialExpiry: number;
}

/** Promotes every delayed job of `queues` due at `serviceNow`; returns how many per queue. */
export async function promoteDueJobs(queues: DatedQueues, serviceNow: Date): Promise<PromotedJobs> {
  return {
    rotation: await promoteDue<RotationJob>(queues.rotation, (data) => data.dueAt, serviceNow),
    keyDeletion: await promoteDue<KeyDeletionJob>(queues.keyDeletion, (data) => data.deleteAt, serviceNow),
    materialExpiry: await promoteDue<MaterialExpiryJob>(queues.materialExpiry, (data) => data.expireAt, serviceNow),
  };
}

async function promoteDue<T>(queue: Queue<T>, dateOf: (data: T) => string, serviceNow: Date): Promise<number> {
  // Every page is read before any job is promoted: promoting shifts the delayed set's indices.
  const due: Array<Job<T>> = [];
  for (let start = 0; ; start += PAGE_SIZE) {
    const page = (await queue.getDelayed(start, start + PAGE_SIZE - 1)) as Array<Job<T> | undefined>;
    for (const job of page) {
      if (job && Date.parse(dateOf(job.data)) <= serviceNow.getTime()) due.push(job);
    }
    if (page.length < PAGE_SIZE) break;
  }
  let promoted = 0;
  for (const job of due) {
    try {
      await job.promote();
      promoted += 1;
    } catch {
      // It fired, was removed or was re-scheduled meanwhile: nothing is left to promote.
    }
  }
  return promoted;
}
