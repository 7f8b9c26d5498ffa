/**
 * Due dates of delayed jobs. Whether work is due is always the service clock's answer
 * (deps.clock: the system clock, or the rig's manual clock), never the wall clock of the
 * process that happens to run the job; BullMQ's delays are only the wake-up time.
 */
import { DelayedError, type Job, type Queue } from 'bullmq';
import type { Clock } from '../clock.js';

/** How long a job that woke too early waits at least before it looks again (a clock step is not lost). */
export const MIN_REDELAY_MS = 1_000;

/** The BullMQ delay for a job due at `dueAt`, measured on the service clock. */
export const delayUntil = (clock: Clock, dueAt: Date): number => Math.max(0, dueAt.getTime() - clock.now().getTime());

/**
 * A job that fired before its date by the service clock (the scheduler's clock ran ahead, or
 * this worker's is behind) is delayed again for the remaining time rather than dropped.
 * Always throws BullMQ's DelayedError, which tells the worker the job was moved, not failed.
 */
export async function delayUntilDue(job: Job, token: string, clock: Clock, dueAt: Date): Promise<never> {
  // moveToDelayed takes a wall-clock timestamp (BullMQ's own time base): now + what is left.
  await job.moveToDelayed(Date.now() + Math.max(delayUntil(clock, dueAt), MIN_REDELAY_MS), token);
  throw new DelayedError();
}

/**
 * Adds the delayed job for work due at `dueAt`, under its deterministic id (one per concern,
 * key or version, and date). BullMQ ignores an add whose id already exists, and a job already
 * waiting for this date got its wake-up from the service clock of its day: if that clock has
 * moved since (the time machine; EnableKey re-scheduling a rotation that fell due while the
 * key was Disabled), the old wake-up is wrong, so a delayed job is re-timed from now. Its
 * date, hence its effect, is unchanged.
 */
export async function addDueJob<Data>(queue: Queue<Data>, name: string, data: Data, jobId: string, clock: Clock, dueAt: Date): Promise<void> {
  const delay = delayUntil(clock, dueAt);
  // (BullMQ types a job's name through a conditional type that a generic Data leaves open.)
  await queue.add(name as never, data as never, { jobId, delay });
  const existing = await queue.getJob(jobId);
  if (existing && (await existing.isDelayed())) {
    // It may leave the delayed set meanwhile (it started): then there is nothing to re-time.
    await existing.changeDelay(delay).catch(() => undefined);
  }
}
