/**
 * Material expiry (seed 000, step 4: "KMS deletes the expired key material at the specified
 * time"). ImportKeyMaterial schedules a delayed job per version and expiry; the processor calls
 * the same use case as DeleteKeyMaterial through `expireKeyMaterial`, which applies only if
 * the expiry is still the job's and is due (a conditional update: idempotent). The sweeper
 * runs `runMaterialExpirySweep` for anything a lost job missed.
 */
import type { Job, Queue } from 'bullmq';
import type { Clock } from '../clock.js';
import type { ServiceDeps } from '../services/context.js';
import { type MaterialExpiryOutcome, expireKeyMaterial } from '../services/key-material.js';
import { listVersionsWithMaterialDue } from '../store/versions.js';
import { addDueJob, delayUntilDue } from './due-dates.js';
import type { QueueDefinition } from './queue-definition.js';

export const MATERIAL_EXPIRY_QUEUE = 'material-expiry';
export const MATERIAL_EXPIRY_JOB = 'expire-material';

export interface MaterialExpiryJob {
  keyId: string;
  /** The version whose material expires (each version has its own, seed 002). */
  versionId: string;
  /** ISO-8601: the expiry this job was scheduled for. */
  expireAt: string;
}

/**
 * Deterministic per version and expiry: re-scheduling the same expiry is a no-op, and a job
 * left over from an earlier expiry finds the version's expiry changed and does nothing.
 * BullMQ job ids may not contain ':'.
 */
export const materialExpiryJobId = (versionId: string, expireAt: Date): string => `expire-${versionId}-${expireAt.getTime()}`;

export async function scheduleMaterialExpiry(
  queue: Queue<MaterialExpiryJob>,
  clock: Clock,
  target: { keyId: string; versionId: string },
  expireAt: Date,
): Promise<void> {
  // A failed job is kept for diagnosis; it blocks only its own (version, expiry) id, and the
  // sweeper expires that material anyway.
  await addDueJob(queue, MATERIAL_EXPIRY_JOB, { ...target, expireAt: expireAt.toISOString() }, materialExpiryJobId(target.versionId, expireAt), clock, expireAt);
}

/**
 * The processor. A job that fires before the service's clock says the material is due (the
 * scheduler's clock ran ahead) is delayed again rather than dropped.
 */
export function materialExpiryProcessor(deps: ServiceDeps) {
  return async (job: Job<MaterialExpiryJob>, token?: string): Promise<MaterialExpiryOutcome> => {
    const expireAt = new Date(job.data.expireAt);
    const outcome = await expireKeyMaterial(deps, job.data.keyId, job.data.versionId, expireAt);
    if (outcome === 'not-due' && token !== undefined) await delayUntilDue(job, token, deps.clock, expireAt);
    if (outcome === 'expired') {
      deps.logger.info({ keyId: job.data.keyId, versionId: job.data.versionId, expireAt: job.data.expireAt }, 'imported key material expired and was deleted');
    }
    return outcome;
  };
}

export interface MaterialExpirySweep {
  expired: string[];
  failed: string[];
}

/**
 * Expires every version whose material is due at the clock's now, in batches; one failing key
 * never stops the rest (STYLE.md). Exported so tests drive expiry with a ManualClock.
 */
export async function runMaterialExpirySweep(deps: ServiceDeps, batchSize = 100): Promise<MaterialExpirySweep> {
  const result: MaterialExpirySweep = { expired: [], failed: [] };
  const seen = new Set<string>();
  for (;;) {
    const due = await listVersionsWithMaterialDue(deps.db, deps.clock.now(), batchSize, [...seen]);
    if (due.length === 0) return result;
    for (const { keyId, versionId, materialExpireAt } of due) {
      seen.add(versionId);
      try {
        if ((await expireKeyMaterial(deps, keyId, versionId, materialExpireAt)) === 'expired') result.expired.push(keyId);
      } catch (error) {
        result.failed.push(keyId);
        deps.logger.warn({ keyId, versionId, err: error instanceof Error ? error.message : String(error) }, 'material expiry failed; will retry');
      }
    }
  }
}

/** The material-expiry queue (jobs/registry.ts). */
export const materialExpiryQueue: QueueDefinition<MaterialExpiryJob, [target: { keyId: string; versionId: string }, expireAt: Date]> = {
  name: MATERIAL_EXPIRY_QUEUE,
  jobNames: [MATERIAL_EXPIRY_JOB],
  concurrency: 4,
  schedule: ({ queue, clock }, target, expireAt) => scheduleMaterialExpiry(queue, clock, target, expireAt),
  processor: ({ deps }) => materialExpiryProcessor(deps),
};
