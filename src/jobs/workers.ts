/**
 * Starts one BullMQ worker per registry entry (jobs/registry.ts), then each queue's start-up
 * work (the repeatable sweeper, a first pool refill). Used by `kms worker`, the quickstart
 * (API and workers in one process) and tests.
 */
import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import type { KmsServices } from '../kms.js';
import { faultPoint, inFaultScope } from '../fault-points.js';
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
    // KMS_FAULT_POINTS (tests only): the job is the scope of its points; `after-commit` once it returned.
    const scoped: typeof processor = (job, token) =>
      inFaultScope(definition.name, async () => {
        const result = await processor(job, token);
        faultPoint('after-commit');
        return result;
      });
    const worker = new Worker(definition.name, finalOnClientError(scoped), { ...settings, name: workerName, concurrency: definition.concurrency });
    worker.on('failed', (job, error) => {
      // Job data holds ids and dates only; the error is a KmsError message (never material).
      logger.warn({ queue: definition.name, job: job?.name, jobId: job?.id, attempts: job?.attemptsMade, err: error.message }, 'job failed');
    });
    worker.on('error', (error) => logger.warn({ queue: definition.name, err: error.message }, 'worker error'));
    byQueue[key] = worker;
  }
  const workers = Object.values(byQueue);
  let keeper: ScheduleKeeper | undefined;
  const close = async () => {
    keeper?.stop();
    await Promise.all(workers.map((w) => w.close().catch(() => undefined)));
  };
  const startOptions: WorkerStartOptions = {
    sweeper: options.sweeper !== false,
    sweepEveryMs: options.sweepEveryMs ?? deps.config.jobs.sweepIntervalSeconds * 1000,
    auditDigestEveryMs: deps.config.audit.digestEveryMinutes * 60_000,
  };
  try {
    await Promise.all(workers.map((w) => w.waitUntilReady()));
    for (const [key, definition] of entries) {
      await definition.onWorkersStarted?.({ queue: jobs.queues[key], clock: deps.clock }, startOptions);
    }
    keeper = keepSchedules(kms, startOptions);
  } catch (error) {
    await close();
    throw error;
  }
  logger.info({ queues: entries.map(([, d]) => d.name), prefix: settings.prefix }, 'job workers started');
  return { workers, byQueue, close };
}

/** Checks for lost schedules at least this often (and at most every second). */
const SCHEDULE_CHECK_MAX_MS = 30_000;

interface ScheduleKeeper {
  stop(): void;
}

/**
 * Issue 19 item 4b: a Redis restarted empty (or flushed) has lost the repeatable jobs, and
 * nothing else would ever re-create them. Every process that runs workers checks for them
 * every min(sweep interval, 30 s) and whenever its queue connection is ready again, and
 * re-creates the missing ones (jobs/queue-definition.ts ensureSchedule).
 */
function keepSchedules(kms: KmsServices, options: WorkerStartOptions): ScheduleKeeper {
  const { deps, jobs } = kms;
  let running = false;
  const check = async () => {
    if (running) return;
    running = true;
    try {
      for (const [key, definition] of queueEntries()) {
        if (!definition.ensureSchedule) continue;
        const recreated = await definition.ensureSchedule({ queue: jobs.queues[key], clock: deps.clock }, options);
        if (recreated) deps.logger.warn({ queue: definition.name }, 'a repeatable job schedule was missing from Redis (restarted empty or flushed); re-created');
      }
    } catch (error) {
      // Redis away: the next check (or reconnect) tries again.
      deps.logger.debug({ err: error instanceof Error ? error.message : String(error) }, 'schedule check failed');
    } finally {
      running = false;
    }
  };
  const everyMs = Math.min(Math.max(options.sweepEveryMs, 1_000), SCHEDULE_CHECK_MAX_MS);
  const timer = setInterval(() => void check(), everyMs);
  timer.unref();
  // The service's own Redis client (the same server as the queues') says when it is back.
  const onReady = () => void check();
  kms.redis.on('ready', onReady);
  return {
    stop() {
      clearInterval(timer);
      kms.redis.off('ready', onReady);
    },
  };
}
