/**
 * The audit digest queue (issue 17): a repeatable job signs, every KMS_AUDIT_DIGEST_MINUTES,
 * a digest of each audit chain that grew (services/audit-trail.ts createAuditDigests); a
 * one-off job does the same on demand. Two runs at once are harmless: each chain's digest is
 * made under an advisory lock, and a chain with nothing new gets none.
 */
import type { Queue } from 'bullmq';
import { createAuditDigests } from '../services/audit-trail.js';
import type { QueueDefinition } from './queue-definition.js';

export const AUDIT_DIGEST_QUEUE = 'audit-digest';
export const AUDIT_DIGEST_SCHEDULER_ID = 'audit-digest';
export const AUDIT_DIGEST_NOW_JOB = 'audit-digest-now';
export type AuditDigestJob = Record<string, never>;

/** Upserts the repeatable job (one scheduler id, so every worker that starts agrees on it). */
export async function scheduleAuditDigests(queue: Queue<AuditDigestJob>, everyMs: number): Promise<void> {
  await queue.upsertJobScheduler(AUDIT_DIGEST_SCHEDULER_ID, { every: everyMs }, { name: AUDIT_DIGEST_SCHEDULER_ID, data: {} });
}

export const auditDigestQueue: QueueDefinition<AuditDigestJob, []> = {
  name: AUDIT_DIGEST_QUEUE,
  jobNames: [AUDIT_DIGEST_SCHEDULER_ID, AUDIT_DIGEST_NOW_JOB],
  concurrency: 1,
  // On demand: one digest run now.
  schedule: async ({ queue }) => {
    await queue.add(AUDIT_DIGEST_NOW_JOB, {}, { removeOnComplete: 100, removeOnFail: 100 });
  },
  processor:
    ({ deps }) =>
    async () => {
      const made = await createAuditDigests(deps);
      if (made.length > 0) deps.logger.info({ digests: made.map((d) => ({ chain: d.chainId, lastSeq: d.lastSeq })) }, 'audit digests signed');
      return { digests: made.length };
    },
  onWorkersStarted: async ({ queue }, options) => {
    // The same switch as the sweeper: tests that drive jobs by hand make digests on demand.
    if (options.sweeper) await scheduleAuditDigests(queue, options.auditDigestEveryMs);
  },
  ensureSchedule: async ({ queue }, options) => {
    if (!options.sweeper || (await queue.getJobScheduler(AUDIT_DIGEST_SCHEDULER_ID))) return false;
    await scheduleAuditDigests(queue, options.auditDigestEveryMs);
    return true;
  },
};
