import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import type { Job } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { findObjects } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import * as m from '../../src/hsm/pkcs11/mechanisms.js';
import { keyDeletionJobId } from '../../src/jobs/key-deletion.js';
import { ROTATION_JOB, type RotationJob, rotationJobId } from '../../src/jobs/rotation.js';
import { RECONCILE_GRACE_MS, reconcileHsmObjects } from '../../src/services/reconciler.js';
import { listAudit } from '../../src/store/audit.js';
import { getKey } from '../../src/store/keys.js';
import { waitFor } from '../helpers/jobs.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { deploymentEnv } from '../helpers/serve-process.js';
import { type TestServer, startServer } from '../helpers/server.js';
import { withTokenSession } from '../helpers/token-session.js';

/**
 * Exactly once across processes (issue 14 §3): real worker processes share the test's
 * Postgres database, Redis queue prefix and SoftHSM2 token with the in-process API server.
 * - two `kms worker` processes race for the same due rotations (the delayed job, duplicated
 *   deliveries and both sweepers): one new version per key and due date;
 * - a worker SIGKILLed mid-rotation (HSM object made, transaction open) and mid-deletion (one
 *   object destroyed, transaction open) leaves no duplicate and no lost effect once another
 *   worker runs. The pause comes from the test fixture test/fixtures/job-worker.ts.
 *
 * The workers run on the system clock; the server's ManualClock is set 8 days back, so the keys
 * it creates with a 7-day interval (or a 7-day deletion window) are due by the workers' clock.
 */
const DAY = 86_400_000;
const repoRoot = path.resolve(import.meta.dirname, '../..');

let server: TestServer;
let call: CallApi;
const clock = new ManualClock(new Date(Date.now() - 8 * DAY));
const children: ChildProcess[] = [];

beforeAll(async () => {
  server = await startServer({ clock, env: { KMS_SIGNATURE_MAX_SKEW_SECONDS: String(30 * 86_400), KMS_WRAPPING_KEY_POOL_SIZE: '0' } });
  call = openApiClient(server.endpoint, server.admin);
});

afterEach(async () => {
  await Promise.all(children.splice(0).map(stop));
});

afterAll(async () => {
  await server?.stop();
});

interface WorkerProcess {
  child: ChildProcess;
  output(): string;
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
}

/** `kms worker` (or the fault fixture) against the server's database, queues and token. */
function startWorker(options: { fixture?: boolean; env?: Record<string, string> } = {}): WorkerProcess {
  const args = options.fixture
    ? ['--import', 'tsx', path.join(repoRoot, 'test/fixtures/job-worker.ts')]
    : [path.join(repoRoot, 'bin/kms.mjs'), 'worker'];
  const child = spawn(process.execPath, args, {
    cwd: repoRoot,
    env: {
      ...process.env,
      ...deploymentEnv(server),
      KMS_SWEEP_INTERVAL_SECONDS: '1',
      KMS_WRAPPING_KEY_POOL_SIZE: '0',
      KMS_LOG_LEVEL: 'info',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let text = '';
  child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  return {
    child,
    output: () => text,
    async waitForOutput(pattern, timeoutMs = 60_000) {
      let match: RegExpExecArray | null = null;
      await waitFor(`${pattern} in the worker's output (so far: ${text.slice(-2000)})`, () => (match = pattern.exec(text)) !== null || child.exitCode !== null, timeoutMs);
      if (!match) throw new Error(`the worker exited (${child.exitCode}) before ${pattern}:\n${text}`);
      return match;
    },
  };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await gone;
  clearTimeout(timer);
}

async function sigkill(child: ChildProcess): Promise<void> {
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await gone;
}

const versionsOf = async (keyId: string) =>
  (await server.kms.deps.db.query<{ id: string }>('SELECT id FROM key_versions WHERE key_id = $1 ORDER BY ordinal', [keyId])).rows.map((r) => r.id);
const tokenHas = (id: string) => withTokenSession(server, (p11, session) => findObjects(p11, session, m.secretKeyById(id)).length);

async function createRotatingKey(instanceId: string): Promise<{ keyId: string; dueAt: Date }> {
  const keyId = (await call('CreateKey', { DKMSInstanceId: instanceId, EnableAutomaticRotation: true, RotationInterval: '7d' })).KeyMetadata.KeyId as string;
  const dueAt = (await getKey(server.kms.deps.db, keyId))!.nextRotationDate!;
  expect(dueAt.getTime()).toBeLessThan(Date.now());
  return { keyId, dueAt };
}

describe('two worker processes', () => {
  it('the same due rotations, delivered several times to both, create exactly one version per key', { timeout: 180_000 }, async () => {
    const keys = [
      ...(await Promise.all([1, 2, 3, 4].map(() => createRotatingKey(server.hsmInstanceId)))),
      ...(await Promise.all([1, 2, 3, 4].map(() => createRotatingKey(server.softwareInstanceId)))),
    ];
    const workers = [startWorker(), startWorker()];
    await Promise.all(workers.map((w) => w.waitForOutput(/job workers started/)));
    const pids = workers.map((w) => w.child.pid);

    // Every key's delayed job is brought forward, and four duplicate deliveries of it (as a
    // retry, a restart or a second scheduler would make) race it, in both processes; the two
    // sweepers race them too.
    const queue = server.kms.jobs.queues.rotation;
    const duplicates: Array<Job<RotationJob>> = [];
    for (const { keyId, dueAt } of keys) {
      for (let i = 0; i < 4; i++) {
        duplicates.push(
          await queue.add(ROTATION_JOB, { keyId, dueAt: dueAt.toISOString() }, { jobId: `dup-${i}-${rotationJobId(keyId, dueAt)}`, removeOnComplete: false }),
        );
      }
      await (await queue.getJob(rotationJobId(keyId, dueAt)))?.promote();
    }
    await waitFor('every duplicate to finish', async () => {
      const states = await Promise.all(duplicates.map((d) => queue.getJobState(d.id!)));
      return states.every((s) => s === 'completed' || s === 'failed');
    }, 90_000);

    const finished = await Promise.all(duplicates.map((d) => queue.getJob(d.id!)));
    expect(finished.map((j) => j?.failedReason).filter(Boolean)).toEqual([]);
    // Both processes took part.
    expect(new Set(finished.map((j) => j?.processedBy?.split(':').pop()))).toEqual(new Set(pids.map(String)));
    for (const { keyId, dueAt } of keys) {
      expect(await versionsOf(keyId)).toHaveLength(2);
      const rotated = finished.filter((j) => j?.data.keyId === keyId && j.returnvalue === 'rotated');
      expect(rotated.length).toBeLessThanOrEqual(1);
      expect(await listAudit(server.kms.deps.db, { keyId, action: 'AutomaticRotation' })).toHaveLength(1);
      const key = (await getKey(server.kms.deps.db, keyId))!;
      expect(key.nextRotationDate!.getTime()).toBe(key.lastRotationDate!.getTime() + 7 * DAY);
      expect(key.lastRotationDate!.getTime()).toBeGreaterThan(dueAt.getTime());
    }
  });
});

describe('a worker SIGKILLed mid-way', () => {
  it('mid-rotation (HSM object made, not committed): the next worker rotates once; the orphan object goes to the reconciler', { timeout: 180_000 }, async () => {
    const { keyId, dueAt } = await createRotatingKey(server.hsmInstanceId);
    const [first] = await versionsOf(keyId);
    const doomed = startWorker({ fixture: true, env: { KMS_TEST_PAUSE_AFTER: 'generateVersionKey', KMS_TEST_SWEEPER: '0' } });
    await doomed.waitForOutput(/workers-ready/);
    await (await server.kms.jobs.queues.rotation.getJob(rotationJobId(keyId, dueAt)))!.promote();
    const [, inFlight] = await doomed.waitForOutput(/paused-after generateVersionKey (\S+)/);
    expect(await tokenHas(inFlight!)).toBe(1);
    expect(await versionsOf(keyId)).toEqual([first]);
    await sigkill(doomed.child);

    const next = startWorker();
    await next.waitForOutput(/job workers started/);
    await waitFor('the rotation to happen', async () => (await versionsOf(keyId)).length >= 2, 60_000);
    const versions = await versionsOf(keyId);
    expect(versions).toHaveLength(2);
    expect(versions).not.toContain(inFlight);
    const key = (await getKey(server.kms.deps.db, keyId))!;
    expect(key.primaryVersionId).toBe(versions[1]);
    expect(await tokenHas(versions[1]!)).toBe(1);
    expect(key.nextRotationDate!.getTime()).toBeGreaterThan(Date.now());
    await stop(next.child);
    expect(await versionsOf(keyId)).toHaveLength(2);

    // The killed attempt's object has no row: the reconciler's orphan (two sightings over the
    // grace period). On the workers' clock (the wall clock): their own sweeps may have recorded
    // the first sighting already.
    expect(await tokenHas(inFlight!)).toBe(1);
    const workersClock = new ManualClock(new Date());
    await reconcileHsmObjects({ ...server.kms.deps, clock: workersClock });
    workersClock.advance(RECONCILE_GRACE_MS);
    const reconciled = await reconcileHsmObjects({ ...server.kms.deps, clock: workersClock });
    expect(reconciled.destroyed).toContainEqual({ kind: 'orphan-version-key', objectId: inFlight });
    expect(await tokenHas(inFlight!)).toBe(0);
    expect(await tokenHas(versions[1]!)).toBe(1);
  });

  it('mid-deletion (one object destroyed, rows kept): the next worker finishes the deletion', { timeout: 180_000 }, async () => {
    const keyId = (await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId })).KeyMetadata.KeyId as string;
    await call('CreateKeyVersion', { KeyId: keyId });
    const versions = await versionsOf(keyId);
    expect(versions).toHaveLength(2);
    const used = async () =>
      (await call('GetKmsInstanceQuotaInfos', { KmsInstanceId: server.hsmInstanceId, ResourceType: 'key' })).KmsInstanceQuotaInfos[0].UsedQuantity as number;
    const usedBefore = await used();
    await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
    const deleteDate = (await getKey(server.kms.deps.db, keyId))!.deleteDate!;
    expect(deleteDate.getTime()).toBeLessThan(Date.now());

    const doomed = startWorker({ fixture: true, env: { KMS_TEST_PAUSE_AFTER: 'destroyVersionKey', KMS_TEST_SWEEPER: '0' } });
    await doomed.waitForOutput(/workers-ready/);
    await (await server.kms.jobs.queues.keyDeletion.getJob(keyDeletionJobId(keyId, deleteDate)))!.promote();
    await doomed.waitForOutput(/paused-after destroyVersionKey/);
    const remaining = async () => (await Promise.all(versions.map(tokenHas))).reduce((a, b) => a + b, 0);
    expect(await remaining()).toBe(1);
    await sigkill(doomed.child);
    // Rolled back with the process: the key and both version rows are still there.
    expect((await getKey(server.kms.deps.db, keyId))?.state).toBe('PendingDeletion');
    expect(await versionsOf(keyId)).toHaveLength(2);

    const next = startWorker();
    await next.waitForOutput(/job workers started/);
    await waitFor('the deletion to finish', async () => (await getKey(server.kms.deps.db, keyId)) === undefined, 60_000);
    expect(await remaining()).toBe(0);
    expect(await versionsOf(keyId)).toEqual([]);
    expect(await used()).toBe(usedBefore - 2);
    expect(await listAudit(server.kms.deps.db, { keyId, action: 'DeleteKey' })).toHaveLength(1);
  });
});
