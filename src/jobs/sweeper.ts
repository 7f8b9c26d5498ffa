/**
 * The repeatable sweeper (DESIGN.md, Jobs): every KMS_SWEEP_INTERVAL_SECONDS it finds what a
 * lost or failed job missed — imported material past its expiry — and queues the wrapping
 * key cleanup and a pool refill. Every effect it triggers is idempotent.
 */
import type { Queue } from 'bullmq';
import type { ServiceDeps } from '../services/context.js';
import { type MaterialExpirySweep, runMaterialExpirySweep } from './material-expiry.js';
import { type WrappingPoolJob, requestWrappingKeyCleanup, requestWrappingPoolRefill } from './wrapping-pool.js';

export const SWEEPER_QUEUE = 'sweeper';
export const SWEEPER_SCHEDULER_ID = 'sweep';
export type SweeperJob = Record<string, never>;

/** Upserts the repeatable job (one scheduler id, so every worker that starts agrees on it). */
export async function scheduleSweeper(queue: Queue<SweeperJob>, everyMs: number): Promise<void> {
  await queue.upsertJobScheduler(SWEEPER_SCHEDULER_ID, { every: everyMs }, { name: SWEEPER_SCHEDULER_ID, data: {} });
}

export function sweeperProcessor(deps: ServiceDeps, wrappingPool: Queue<WrappingPoolJob>) {
  return async (): Promise<MaterialExpirySweep> => {
    const sweep = await runMaterialExpirySweep(deps);
    await requestWrappingKeyCleanup(wrappingPool);
    await requestWrappingPoolRefill(wrappingPool);
    return sweep;
  };
}
