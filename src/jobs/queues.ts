/**
 * The BullMQ side of the composition root (DESIGN.md, Jobs): one queue per registry entry
 * (jobs/registry.ts), all under one Redis key prefix (KMS_QUEUE_PREFIX), and the
 * job-scheduling port the services use, bound to the queue modules' schedulers. Producers live
 * in every process (`kms serve` schedules); workers only where jobs/workers.ts starts them
 * (`kms worker`, the quickstart, tests).
 */
import { type ConnectionOptions, type DefaultJobOptions, Queue, UnrecoverableError } from 'bullmq';
import type { Clock } from '../clock.js';
import type { KmsConfig } from '../config.js';
import { KmsError } from '../domain/errors.js';
import type { JobsPort } from '../services/jobs-port.js';
import { REDIS_RECONNECT_CAP_MS } from '../store/redis.js';
import type { ScheduleContext } from './queue-definition.js';
import { JOB_QUEUES, type KmsQueues, queueEntries } from './registry.js';

export type { KmsQueues };

/** Where the queues live. */
export interface QueueSettings {
  connection: ConnectionOptions;
  prefix: string;
}

export function queueSettings(config: Pick<KmsConfig, 'redisUrl' | 'jobs'>): QueueSettings {
  return {
    // BullMQ opens its own ioredis connections from these options (blocking ones for workers).
    connection: {
      url: config.redisUrl ?? 'redis://127.0.0.1:6379',
      // As the service's own client (store/redis.ts): a lost Redis is retried at most every
      // REDIS_RECONNECT_CAP_MS, so workers (and a worker still starting) resume within that
      // much of its return (BullMQ's default backs off to 20 s; issue 19 item 5).
      retryStrategy: (times: number) => Math.min(times * 50, REDIS_RECONNECT_CAP_MS),
    },
    prefix: config.jobs.queuePrefix,
  };
}

/**
 * Every job: `unavailable` failures (HSM or database away) retry with exponential backoff;
 * `client` failures are final (see `finalOnClientError`). Finished jobs are removed so a
 * deterministic job id can be scheduled again.
 */
export const DEFAULT_JOB_OPTIONS: DefaultJobOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 1_000 },
  removeOnComplete: true,
  removeOnFail: { count: 1_000 },
};

/** The producers and the scheduling port (`JobsPort`) the services call. */
export interface KmsJobs extends JobsPort {
  queues: KmsQueues;
  settings: QueueSettings;
  close(): Promise<void>;
}

export function createKmsJobs(config: Pick<KmsConfig, 'redisUrl' | 'jobs'>, clock: Clock): KmsJobs {
  const settings = queueSettings(config);
  const options = { ...settings, defaultJobOptions: DEFAULT_JOB_OPTIONS };
  const queues = Object.fromEntries(queueEntries().map(([key, definition]) => [key, new Queue(definition.name, options)])) as KmsQueues;
  // Connection errors surface on the calls that need Redis (and are logged by their
  // callers); an unhandled 'error' event must not crash the process.
  for (const queue of Object.values(queues)) queue.on('error', () => undefined);
  const on = <D>(queue: Queue<D>): ScheduleContext<D> => ({ queue, clock });
  return {
    queues,
    settings,
    scheduleMaterialExpiry: (keyId, versionId, expireAt) => JOB_QUEUES.materialExpiry.schedule(on(queues.materialExpiry), { keyId, versionId }, expireAt),
    requestWrappingPoolRefill: () => JOB_QUEUES.wrappingPool.schedule(on(queues.wrappingPool), 'refill'),
    scheduleRotation: (keyId, dueAt) => JOB_QUEUES.rotation.schedule(on(queues.rotation), keyId, dueAt),
    scheduleKeyDeletion: (keyId, deleteAt) => JOB_QUEUES.keyDeletion.schedule(on(queues.keyDeletion), keyId, deleteAt),
    async close() {
      await Promise.all(Object.values(queues).map((q) => q.close().catch(() => undefined)));
    },
  };
}

/**
 * STYLE.md, Errors: a `client` KmsError will fail the same way on every retry, so it is
 * final (BullMQ's UnrecoverableError); anything else is thrown as is and retried.
 */
export function finalOnClientError<A extends unknown[], R>(processor: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A) => {
    try {
      return await processor(...args);
    } catch (error) {
      if (error instanceof KmsError && error.kind === 'client') throw new UnrecoverableError(`${error.code}: ${error.message}`);
      throw error;
    }
  };
}
