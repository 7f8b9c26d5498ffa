import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { rotationJobId, runRotationSweep, scheduleRotation } from '../../src/jobs/rotation.js';
import { startJobWorkers } from '../../src/jobs/workers.js';
import { getKey } from '../../src/store/keys.js';
import { createKeyIn } from '../helpers/fixtures.js';
import { waitFor } from '../helpers/jobs.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * The rotation queue and the sweeper's rotation sweep (issue 14 §3), driven by the service
 * clock: the use case itself (rotateKeyIfDue) is test/e2e/rotation.test.ts's.
 */
const DAY = 86_400_000;
let server: TestServer;
let call: CallApi;
let workers: Awaited<ReturnType<typeof startJobWorkers>>;
const clock = new ManualClock(new Date());

beforeAll(async () => {
  server = await startServer({ clock, env: { KMS_SIGNATURE_MAX_SKEW_SECONDS: String(365 * 86_400), KMS_WRAPPING_KEY_POOL_SIZE: '0' } });
  call = openApiClient(server.endpoint, server.admin);
  workers = await startJobWorkers(server.kms, { sweeper: false });
});

afterAll(async () => {
  await workers?.close();
  await server?.stop();
});

const createKey = async (instanceId: string, interval: string) =>
  (await createKeyIn(call, instanceId, { EnableAutomaticRotation: true, RotationInterval: interval })).keyId;
const versionCount = async (keyId: string) =>
  (await server.kms.deps.db.query('SELECT 1 FROM key_versions WHERE key_id = $1', [keyId])).rows.length;

describe('the rotation sweep', () => {
  it('rotates every key due by the service clock, once; keys not yet due and suspended keys stay', async () => {
    const hsm = await createKey(server.hsmInstanceId, '7d');
    const software = await createKey(server.softwareInstanceId, '7d');
    const later = await createKey(server.softwareInstanceId, '30d');
    const disabled = await createKey(server.hsmInstanceId, '7d');
    await call('DisableKey', { KeyId: disabled });

    clock.advance(7 * DAY - 1000);
    expect((await runRotationSweep(server.kms.deps)).outcomes.rotated ?? []).not.toContain(hsm);

    clock.advance(1000);
    const sweep = await runRotationSweep(server.kms.deps);
    expect(sweep.failed).toEqual([]);
    expect(sweep.outcomes.rotated).toEqual(expect.arrayContaining([hsm, software]));
    expect(sweep.outcomes.rotated).not.toContain(later);
    expect(sweep.outcomes.rotated).not.toContain(disabled);
    expect(await Promise.all([hsm, software, later, disabled].map(versionCount))).toEqual([2, 2, 1, 1]);
    expect((await getKey(server.kms.deps.db, hsm))!.nextRotationDate!.getTime()).toBe(clock.now().getTime() + 7 * DAY);

    // A second sweep at the same time finds nothing due.
    expect((await runRotationSweep(server.kms.deps)).outcomes.rotated ?? []).toEqual([]);
    expect(await versionCount(hsm)).toBe(2);
  });
});

describe('the rotation job', () => {
  it('CreateKey schedules it at NextRotationDate; an early delivery is delayed again; at the date the worker rotates once and schedules the next', async () => {
    const keyId = await createKey(server.hsmInstanceId, '7d');
    const dueAt = (await getKey(server.kms.deps.db, keyId))!.nextRotationDate!;
    const queue = server.kms.jobs.queues.rotation;
    const jobId = rotationJobId(keyId, dueAt);
    expect(await (await queue.getJob(jobId))?.isDelayed()).toBe(true);

    // The same job, from a scheduler whose clock already says dueAt: it runs now, finds the key
    // not due by the service clock, and goes back to wait for what is left (7 days).
    await queue.remove(jobId);
    await scheduleRotation(queue, new ManualClock(dueAt), keyId, dueAt);
    await waitFor('the early job to run and be delayed again', async () => {
      const job = await queue.getJob(jobId);
      return job?.attemptsStarted === 1 && (await job.isDelayed());
    });
    expect((await queue.getJob(jobId))!.delay).toBeGreaterThan(7 * DAY - 60_000);
    expect(await versionCount(keyId)).toBe(1);

    clock.set(dueAt);
    await (await queue.getJob(jobId))!.promote();
    await waitFor('the rotation', async () => (await versionCount(keyId)) === 2);
    const key = (await getKey(server.kms.deps.db, keyId))!;
    expect(key.nextRotationDate!.getTime()).toBe(dueAt.getTime() + 7 * DAY);
    // The next one waits on the queue, at the new date.
    expect(await (await queue.getJob(rotationJobId(keyId, key.nextRotationDate!)))?.isDelayed()).toBe(true);
  });
});
