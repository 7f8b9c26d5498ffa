/**
 * Starts the BullMQ workers of every queue, the repeatable sweeper and a first pool refill.
 * Used by `kms worker`, the quickstart (API and workers in one process) and tests.
 */
import { type Processor, Worker } from 'bullmq';
import type { KmsServices } from '../kms.js';
import { MATERIAL_EXPIRY_QUEUE, materialExpiryProcessor } from './material-expiry.js';
import { finalOnClientError } from './queues.js';
import { SWEEPER_QUEUE, scheduleSweeper, sweeperProcessor } from './sweeper.js';
import { WRAPPING_POOL_QUEUE, requestWrappingPoolRefill, wrappingPoolProcessor } from './wrapping-pool.js';

export interface JobWorkers {
  workers: Worker[];
  close(): Promise<void>;
}

export interface StartJobWorkersOptions {
  /** Default: config.jobs.sweepIntervalSeconds. */
  sweepEveryMs?: number;
  /** Default true; tests that drive the sweep by hand turn the repeatable job off. */
  sweeper?: boolean;
}

export async function startJobWorkers(kms: KmsServices, options: StartJobWorkersOptions = {}): Promise<JobWorkers> {
  const { deps, jobs } = kms;
  const { logger } = deps;
  const settings = jobs.settings;
  const start = <T>(name: string, processor: Processor<T>, concurrency: number) => {
    const worker = new Worker<T>(name, finalOnClientError(processor), { ...settings, concurrency });
    worker.on('failed', (job, error) => {
      // Job data holds ids and dates only; the error is a KmsError message (never material).
      logger.warn({ queue: name, job: job?.name, jobId: job?.id, attempts: job?.attemptsMade, err: error.message }, 'job failed');
    });
    worker.on('error', (error) => logger.warn({ queue: name, err: error.message }, 'worker error'));
    return worker;
  };
  const workers = [
    start(MATERIAL_EXPIRY_QUEUE, materialExpiryProcessor(deps), 4),
    // One at a time: RSA generation is CPU-bound in the token and the pool is small.
    start(WRAPPING_POOL_QUEUE, wrappingPoolProcessor(deps), 1),
    start(SWEEPER_QUEUE, sweeperProcessor(deps, jobs.queues.wrappingPool), 1),
  ];
  const close = async () => {
    await Promise.all(workers.map((w) => w.close().catch(() => undefined)));
  };
  try {
    await Promise.all(workers.map((w) => w.waitUntilReady()));
    if (options.sweeper !== false) {
      await scheduleSweeper(jobs.queues.sweeper, options.sweepEveryMs ?? deps.config.jobs.sweepIntervalSeconds * 1000);
    }
    await requestWrappingPoolRefill(jobs.queues.wrappingPool);
  } catch (error) {
    await close();
    throw error;
  }
  logger.info({ queues: [MATERIAL_EXPIRY_QUEUE, WRAPPING_POOL_QUEUE, SWEEPER_QUEUE], prefix: settings.prefix }, 'job workers started');
  return { workers, close };
}
