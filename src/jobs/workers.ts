/**
 * Starts one BullMQ worker per registry entry (jobs/registry.ts), then each queue's start-up
 * work (the repeatable sweeper, a first pool refill). Used by `kms worker`, the quickstart
 * (API and workers in one process) and tests.
 */
import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import type { KmsServices } from '../kms.js';
import { finalOnClientError } from './queues.js';
import type { WorkerStartOptions } from './queue-definition.js';
import { type QueueKey, queueEntries } from './registry.js';

export interface JobWorkers {
  workers: Worker[];
  /** The worker of each registry entry. */
  byQueue: Record<QueueKey, Worker>;
  close(): Promise<void>;
}

export interface StartJobWorkersOptions {
  /** Default: config.jobs.sweepIntervalSeconds. */
  sweepEveryMs?: number;
  /** Default true; tests that drive the sweeper by hand turn the repeatable job off. */
  sweeper?: boolean;
}

export async function startJobWorkers(kms: KmsServices, options: StartJobWorkersOptions = {}): Promise<JobWorkers> {
  const { deps, jobs } = kms;
  const { logger } = deps;
  const settings = jobs.settings;
  const entries = queueEntries();
  const byQueue = {} as Record<QueueKey, Worker>;
  // Recorded on every job this process runs (Job.processedBy): which worker did what.
  const workerName = `${hostname()}:${process.pid}`;
  for (const [key, definition] of entries) {
    const processor = definition.processor({ deps, queues: jobs.queues });
    // STYLE.md, Errors: `client` errors are final, anything else retries with backoff.
    const worker = new Worker(definition.name, finalOnClientError(processor), { ...settings, name: workerName, concurrency: definition.concurrency });
    worker.on('failed', (job, error) => {
      // Job data holds ids and dates only; the error is a KmsError message (never material).
      logger.warn({ queue: definition.name, job: job?.name, jobId: job?.id, attempts: job?.attemptsMade, err: error.message }, 'job failed');
    });
    worker.on('error', (error) => logger.warn({ queue: definition.name, err: error.message }, 'worker error'));
    byQueue[key] = worker;
  }
  const workers = Object.values(byQueue);
  const close = async () => {
    await Promise.all(workers.map((w) => w.close().catch(() => undefined)));
  };
  const startOptions: WorkerStartOptions = {
    sweeper: options.sweeper !== false,
    sweepEveryMs: options.sweepEveryMs ?? deps.config.jobs.sweepIntervalSeconds * 1000,
  };
  try {
    await Promise.all(workers.map((w) => w.waitUntilReady()));
    for (const [key, definition] of entries) {
      await definition.onWorkersStarted?.({ queue: jobs.queues[key], clock: deps.clock }, startOptions);
    }
  } catch (error) {
    await close();
    throw error;
  }
  logger.info({ queues: entries.map(([, d]) => d.name), prefix: settings.prefix }, 'job workers started');
  return { workers, byQueue, close };
}
