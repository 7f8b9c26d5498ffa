/**
 * The one list of queues (issue 14 §3). Each entry is a queue module's definition (name, job
 * names, scheduler, processor: jobs/queue-definition.ts); createKmsJobs makes one BullMQ Queue
 * per entry and startJobWorkers one Worker per entry, so a new concern is one module plus one
 * line here.
 *
 * | queue           | jobs                          | scheduled by                                   |
 * |-----------------|-------------------------------|------------------------------------------------|
 * | material-expiry | delayed, at MaterialExpireTime | ImportKeyMaterial (per version and expiry)      |
 * | rotation        | delayed, at NextRotationDate  | CreateKey, UpdateRotationPolicy, rotations, EnableKey |
 * | key-deletion    | delayed, at DeleteDate        | ScheduleKeyDeletion                            |
 * | wrapping-pool   | refill / cleanup singletons   | each pooled take, worker start, every sweep    |
 * | reconciler      | one pending run               | every sweep                                    |
 * | sweeper         | repeatable                    | every worker start (KMS_SWEEP_INTERVAL_SECONDS) |
 * | audit-digest    | repeatable, or one now        | every worker start (KMS_AUDIT_DIGEST_MINUTES)   |
 */
import type { Queue } from 'bullmq';
import { auditDigestQueue } from './audit-digest.js';
import { keyDeletionQueue } from './key-deletion.js';
import { materialExpiryQueue } from './material-expiry.js';
import type { JobDataOf, QueueDefinition } from './queue-definition.js';
import { reconcilerQueue } from './reconciler.js';
import { rotationQueue } from './rotation.js';
import { sweeperQueue } from './sweeper.js';
import { wrappingPoolQueue } from './wrapping-pool.js';

export const JOB_QUEUES = {
  materialExpiry: materialExpiryQueue,
  rotation: rotationQueue,
  keyDeletion: keyDeletionQueue,
  wrappingPool: wrappingPoolQueue,
  reconciler: reconcilerQueue,
  sweeper: sweeperQueue,
  auditDigest: auditDigestQueue,
} as const;

export type QueueKey = keyof typeof JOB_QUEUES;

/** One BullMQ queue per registry entry, with that entry's job data type. */
export type KmsQueues = { [K in QueueKey]: Queue<JobDataOf<(typeof JOB_QUEUES)[K]>> };

export type AnyQueueDefinition = QueueDefinition<any, any>;

/** The registry as a list, for what treats every queue alike (creating queues and workers, closing them). */
export const queueEntries = (): Array<[QueueKey, AnyQueueDefinition]> => Object.entries(JOB_QUEUES) as Array<[QueueKey, AnyQueueDefinition]>;
