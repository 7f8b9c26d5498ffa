import { setTimeout as sleep } from 'node:timers/promises';
import type { ServiceDeps } from './context.js';

/**
 * What the use cases ask of the job system (the port; jobs/queues.ts implements it over
 * BullMQ, and it reaches every use case through ServiceDeps). Postgres stays the source of
 * truth (DESIGN.md, Jobs): a lost or failed schedule only delays the effect until the sweeper
 * finds it, so callers schedule after their commit (through `scheduleBestEffort`) and never
 * fail a request because Redis is slow or down.
 */
export interface JobsPort {
  /** A delayed job that deletes a version's imported material at `expireAt` (deterministic job id per version and expiry). */
  scheduleMaterialExpiry(keyId: string, versionId: string, expireAt: Date): Promise<void>;
  /** Tops the pre-generated wrapping key pool back up (one pending refill at a time). */
  requestWrappingPoolRefill(): Promise<void>;
  /** A delayed job that rotates the key at `dueAt` (its NextRotationDate; deterministic job id per key and date). */
  scheduleRotation(keyId: string, dueAt: Date): Promise<void>;
  /** A delayed job that deletes the key at `deleteAt` (its DeleteDate; deterministic job id per key and date). */
  scheduleKeyDeletion(keyId: string, deleteAt: Date): Promise<void>;
}

const SCHEDULE_TIMEOUT_MS = 2_000;

/**
 * Runs a scheduling call after a commit: bounded in time (ioredis queues commands while
 * Redis is down) and never thrown; a failure is logged and left to the sweeper.
 */
export async function scheduleBestEffort(deps: Pick<ServiceDeps, 'logger'>, what: string, schedule: () => Promise<void>): Promise<void> {
  const timeout = new AbortController();
  try {
    const outcome = await Promise.race([
      schedule().then(() => 'done' as const),
      sleep(SCHEDULE_TIMEOUT_MS, 'timeout' as const, { signal: timeout.signal }),
    ]);
    if (outcome === 'timeout') deps.logger.warn({ job: what }, 'job scheduling timed out; the sweeper will catch up');
  } catch (error) {
    deps.logger.warn({ job: what, err: error instanceof Error ? error.message : String(error) }, 'job scheduling failed; the sweeper will catch up');
  } finally {
    timeout.abort();
  }
}
