/**
 * What one queue module exports (STYLE.md, "Queues as plain classes with typed job data"):
 * BullMQ's own Queue, Worker and Job classes, and per concern one definition with the queue's
 * name, its job names, how work is scheduled on it and the processor a worker runs. The
 * registry (jobs/registry.ts) lists the definitions once; createKmsJobs makes their queues and
 * startJobWorkers their workers from that one list.
 */
import type { Job, Queue } from 'bullmq';
import type { Clock } from '../clock.js';
import type { ServiceDeps } from '../services/context.js';
import type { KmsQueues } from './registry.js';

/** What a scheduler needs: its own queue and the clock that says how far away a due date is. */
export interface ScheduleContext<Data> {
  queue: Queue<Data>;
  clock: Clock;
}

/** What a processor is built from: the services' dependencies and every queue (a sweep queues follow-up work). */
export interface ProcessorContext {
  deps: ServiceDeps;
  queues: KmsQueues;
}

/** How `kms worker` was started (tests drive the sweeper by hand). */
export interface WorkerStartOptions {
  /** How often the repeatable sweeper runs. */
  sweepEveryMs: number;
  /** False: no repeatable sweeper is (re-)installed by this process. */
  sweeper: boolean;
  /** How often the repeatable audit digest job runs (installed when `sweeper` is true). */
  auditDigestEveryMs: number;
}

export interface QueueDefinition<Data, ScheduleArgs extends unknown[] = never[]> {
  /** The BullMQ queue name (under KMS_QUEUE_PREFIX). */
  readonly name: string;
  /** The job names this queue carries. */
  readonly jobNames: readonly string[];
  /** Jobs one worker process runs at once. */
  readonly concurrency: number;
  /**
   * Puts work on the queue: a delayed job at a due date with a deterministic id, a singleton
   * request or a repeatable schedule, as the concern needs. Idempotent.
   */
  schedule(context: ScheduleContext<Data>, ...args: ScheduleArgs): Promise<void>;
  /** The worker's processor. Its `client` KmsErrors are final, anything else is retried (jobs/workers.ts). */
  processor(context: ProcessorContext): (job: Job<Data>, token?: string) => Promise<unknown>;
  /** Run once by every process that starts workers (install the repeatable sweeper, fill the pool). */
  onWorkersStarted?(context: ScheduleContext<Data>, options: WorkerStartOptions): Promise<void>;
  /**
   * Re-creates this queue's repeatable schedule when Redis no longer has it (a Redis restarted
   * empty or flushed, issue 19 item 4b); run by running workers periodically and on reconnect.
   * Returns whether it had to. Leaves an existing schedule alone (its next run stays).
   */
  ensureSchedule?(context: ScheduleContext<Data>, options: WorkerStartOptions): Promise<boolean>;
}

/** The job data type of a definition. */
export type JobDataOf<D> = D extends QueueDefinition<infer Data, infer _Args> ? Data : never;
