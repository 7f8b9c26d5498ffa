import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { keyDeletionJobId } from '../../src/jobs/key-deletion.js';
import { materialExpiryJobId } from '../../src/jobs/material-expiry.js';
import type { JobDataOf, ScheduleContext } from '../../src/jobs/queue-definition.js';
import { RECONCILE_JOB } from '../../src/jobs/reconciler.js';
import { JOB_QUEUES, type QueueKey, queueEntries } from '../../src/jobs/registry.js';
import { rotationJobId } from '../../src/jobs/rotation.js';
import { SWEEPER_SCHEDULER_ID, runSweep } from '../../src/jobs/sweeper.js';
import { type JobWorkers, startJobWorkers } from '../../src/jobs/workers.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * The registry drives everything that lists queues: createKmsJobs makes one queue per entry,
 * startJobWorkers one running worker per entry, and every entry's scheduler puts its work on
 * its own queue. The workers here run no job: every queue is paused in Redis, so what the test
 * adds waits there. (Pausing the workers is not enough: a worker already blocked waiting for a
 * job when it is paused still takes the next one — BullMQ's fetch does not look at the pause
 * again — which emptied the wrapping pool's `cleanup` job now and then.)
 */
let server: TestServer;
let workers: JobWorkers;
const clock = new ManualClock(new Date());

beforeAll(async () => {
  server = await startServer({ clock, env: { KMS_WRAPPING_KEY_POOL_SIZE: '0' } });
  // No repeatable sweeper: its first run would queue (and run) a reconcile racing the test's.
  workers = await startJobWorkers(server.kms, { sweeper: false });
  await Promise.all(Object.values(server.kms.jobs.queues).map((queue) => queue.pause()));
});

afterAll(async () => {
  await workers?.close();
  await server?.stop();
});

describe('every queue in the registry', () => {
  it('has a queue and a running worker of its own name', () => {
    for (const [key, definition] of queueEntries()) {
      expect(server.kms.jobs.queues[key].name, key).toBe(definition.name);
      expect(workers.byQueue[key].name, key).toBe(definition.name);
      expect(workers.byQueue[key].isRunning() || workers.byQueue[key].isPaused(), key).toBe(true);
    }
    expect(workers.workers).toHaveLength(queueEntries().length);
    expect(Object.keys(server.kms.jobs.queues).sort()).toEqual(Object.keys(JOB_QUEUES).sort());
  });

  it('has a scheduler that puts its work on its own queue', async () => {
    const due = new Date(clock.now().getTime() + 3_600_000);
    const keyId = 'key-registry-test';
    const versionId = '00000000-0000-4000-8000-000000000001';
    const on = <K extends QueueKey>(key: K): ScheduleContext<JobDataOf<(typeof JOB_QUEUES)[K]>> => ({ queue: server.kms.jobs.queues[key], clock });
    // One call per entry; a new queue without a line here fails to compile (Record<QueueKey, …>).
    const schedules: Record<QueueKey, () => Promise<void>> = {
      materialExpiry: () => JOB_QUEUES.materialExpiry.schedule(on('materialExpiry'), { keyId, versionId }, due),
      rotation: () => JOB_QUEUES.rotation.schedule(on('rotation'), keyId, due),
      keyDeletion: () => JOB_QUEUES.keyDeletion.schedule(on('keyDeletion'), keyId, due),
      wrappingPool: () => JOB_QUEUES.wrappingPool.schedule(on('wrappingPool'), 'cleanup'),
      reconciler: () => JOB_QUEUES.reconciler.schedule(on('reconciler')),
      sweeper: () => JOB_QUEUES.sweeper.schedule(on('sweeper'), 60_000),
      auditDigest: () => JOB_QUEUES.auditDigest.schedule(on('auditDigest')),
    };
    for (const schedule of Object.values(schedules)) await schedule();
    const q = server.kms.jobs.queues;
    expect(await q.materialExpiry.getJob(materialExpiryJobId(versionId, due))).toBeDefined();
    expect(await q.rotation.getJob(rotationJobId(keyId, due))).toBeDefined();
    expect(await q.keyDeletion.getJob(keyDeletionJobId(keyId, due))).toBeDefined();
    expect(await q.wrappingPool.getJob('cleanup')).toBeDefined();
    expect(await q.reconciler.getJob(RECONCILE_JOB)).toBeDefined();
    expect((await q.sweeper.getJobScheduler(SWEEPER_SCHEDULER_ID))?.every).toBe(60_000);
    expect((await q.auditDigest.getJobs(['waiting', 'active', 'completed', 'failed'])).map((j) => j.name)).toContain('audit-digest-now');
    // Each delayed job waits for its date by the service clock.
    expect((await q.rotation.getJob(rotationJobId(keyId, due)))?.delay).toBe(3_600_000);
  });

  it('re-scheduling a date the service clock has since reached re-times the job already waiting for it', async () => {
    // A rotation job scheduled an hour ahead; the clock then jumps (the time machine), and
    // EnableKey schedules the same (key, date) again: the job must not keep its old wake-up.
    const due = new Date(clock.now().getTime() + 3_600_000);
    const jobId = rotationJobId('key-retime-test', due);
    await server.kms.deps.jobs.scheduleRotation('key-retime-test', due);
    expect((await server.kms.jobs.queues.rotation.getJob(jobId))?.delay).toBe(3_600_000);
    clock.set(due);
    await server.kms.deps.jobs.scheduleRotation('key-retime-test', due);
    expect((await server.kms.jobs.queues.rotation.getJob(jobId))?.delay).toBe(0);
  });

  it('the services reach the queues through the jobs port, and a sweep queues the reconciler', async () => {
    const due = new Date(clock.now().getTime() + 7_200_000);
    await server.kms.deps.jobs.scheduleRotation('key-port-test', due);
    await server.kms.deps.jobs.scheduleKeyDeletion('key-port-test', due);
    expect(await server.kms.jobs.queues.rotation.getJob(rotationJobId('key-port-test', due))).toBeDefined();
    expect(await server.kms.jobs.queues.keyDeletion.getJob(keyDeletionJobId('key-port-test', due))).toBeDefined();

    await server.kms.jobs.queues.reconciler.remove(RECONCILE_JOB);
    const report = await runSweep(server.kms.deps, server.kms.jobs.queues);
    expect(report.failedParts).toEqual([]);
    expect(await server.kms.jobs.queues.reconciler.getJob(RECONCILE_JOB)).toBeDefined();
  });
});
