/**
 * Material expiry (seed 000, step 4: "KMS deletes the expired key material at the specified
 * time"). ImportKeyMaterial schedules a delayed job per key and expiry; the processor calls
 * the same use case as DeleteKeyMaterial through `expireKeyMaterial`, which applies only if
 * the expiry is still the job's and is due (a conditional update: idempotent). The sweeper
 * runs `runMaterialExpirySweep` for anything a lost job missed.
 */
import { DelayedError, type Job, type Queue } from 'bullmq';
import type { Clock } from '../clock.js';
import type { ServiceDeps } from '../services/context.js';
import { type MaterialExpiryOutcome, expireKeyMaterial } from '../services/key-material.js';
import { listKeysWithMaterialDue } from '../store/keys.js';

export const MATERIAL_EXPIRY_QUEUE = 'material-expiry';
export const MATERIAL_EXPIRY_JOB = 'expire-material';

export interface MaterialExpiryJob {
  keyId: string;
  /** ISO-8601: the expiry this job was scheduled for. */
  expireAt: string;
}

/**
 * Deterministic per key and expiry: re-scheduling the same expiry is a no-op, and a job left
 * over from an earlier expiry finds the key's expiry changed and does nothing. BullMQ job
 * ids may not contain ':'.
 */
export const materialExpiryJobId = (keyId: string, expireAt: Date): string => `expire-${keyId}-${expireAt.getTime()}`;

export async function scheduleMaterialExpiry(queue: Queue<MaterialExpiryJob>, clock: Clock, keyId: string, expireAt: Date): Promise<void> {
  await queue.add(
    MATERIAL_EXPIRY_JOB,
    { keyId, expireAt: expireAt.toISOString() },
    // A failed job is kept for diagnosis; it blocks only its own (key, expiry) id, and the
    // sweeper expires that material anyway.
    { jobId: materialExpiryJobId(keyId, expireAt), delay: Math.max(0, expireAt.getTime() - clock.now().getTime()) },
  );
}

/**
 * The processor. A job that fires before the service's clock says the material is due (the
 * scheduler's clock ran ahead) is delayed again rather than dropped.
 */
export function materialExpiryProcessor(deps: ServiceDeps) {
  return async (job: Job<MaterialExpiryJob>, token?: string): Promise<MaterialExpiryOutcome> => {
    const expireAt = new Date(job.data.expireAt);
    const outcome = await expireKeyMaterial(deps, job.data.keyId, expireAt);
    if (outcome === 'not-due' && token !== undefined) {
      const remaining = expireAt.getTime() - deps.clock.now().getTime();
      await job.moveToDelayed(Date.now() + Math.max(remaining, 1_000), token);
      throw new DelayedError();
    }
    if (outcome === 'expired') deps.logger.info({ keyId: job.data.keyId, expireAt: job.data.expireAt }, 'imported key material expired and was deleted');
    return outcome;
  };
}

export interface MaterialExpirySweep {
  expired: string[];
  failed: string[];
}

/**
 * Expires every key whose material is due at the clock's now, in batches; one failing key
 * never stops the rest (STYLE.md). Exported so tests drive expiry with a ManualClock.
 */
export async function runMaterialExpirySweep(deps: ServiceDeps, batchSize = 100): Promise<MaterialExpirySweep> {
  const result: MaterialExpirySweep = { expired: [], failed: [] };
  const seen = new Set<string>();
  for (;;) {
    const due = await listKeysWithMaterialDue(deps.db, deps.clock.now(), batchSize, [...seen]);
    if (due.length === 0) return result;
    for (const { id, materialExpireAt } of due) {
      seen.add(id);
      try {
        if ((await expireKeyMaterial(deps, id, materialExpireAt)) === 'expired') result.expired.push(id);
      } catch (error) {
        result.failed.push(id);
        deps.logger.warn({ keyId: id, err: error instanceof Error ? error.message : String(error) }, 'material expiry failed; will retry');
      }
    }
  }
}
