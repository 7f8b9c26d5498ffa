import { randomBytes } from 'node:crypto';
import type { Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { unavailable } from '../../src/domain/errors.js';
import type { Hsm } from '../../src/hsm/hsm.js';
import { findObjects } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import * as m from '../../src/hsm/pkcs11/mechanisms.js';
import { type KeyDeletionJob, keyDeletionJobId, keyDeletionProcessor, runKeyDeletionSweep } from '../../src/jobs/key-deletion.js';
import { startJobWorkers } from '../../src/jobs/workers.js';
import { deleteKeyIfDue } from '../../src/services/key-deletion.js';
import { listAudit } from '../../src/store/audit.js';
import { getKey } from '../../src/store/keys.js';
import { createKeyId, createKeyIn } from '../helpers/fixtures.js';
import { importMaterial, waitFor } from '../helpers/jobs.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';
import { withTokenSession } from '../helpers/token-session.js';

/**
 * Key deletion at DeleteDate (issue 14 §3): the key, its versions, aliases, tags, wrapping
 * pairs and every HSM object go; quota units come back; old ciphertexts answer 404. Driven with
 * a ManualClock (the sweep and the processor called directly), and once through the real
 * BullMQ job that ScheduleKeyDeletion schedules.
 */
const DAY = 86_400_000;

type Kind = 'hsm' | 'software' | 'default' | 'hsm-byok' | 'software-byok';

/** Every object of the token with one of these ids (secret keys and private keys). */
const objectsNamed = (server: TestServer, ids: readonly string[]) =>
  withTokenSession(server, (p11, session) =>
    ids.flatMap((id) => [...findObjects(p11, session, m.secretKeyById(id)), ...findObjects(p11, session, m.privateKeyById(id))]).length,
  );

const rowCount = async (server: TestServer, sql: string, params: unknown[]) => (await server.kms.deps.db.query(sql, params)).rows.length;

describe('with an injected clock', () => {
  let server: TestServer;
  let call: CallApi;
  const clock = new ManualClock(new Date());

  beforeAll(async () => {
    // The clock moves weeks ahead of the SDK's request timestamps: widen the skew window.
    server = await startServer({ clock, env: { KMS_SIGNATURE_MAX_SKEW_SECONDS: String(365 * 86_400) } });
    call = openApiClient(server.endpoint, server.admin);
  });

  afterAll(async () => {
    await server?.stop();
  });

  const used = async (instanceId: string) =>
    (await call('GetKmsInstanceQuotaInfos', { KmsInstanceId: instanceId, ResourceType: 'key' })).KmsInstanceQuotaInfos[0].UsedQuantity as number;

  /** A key of each kind, with material, two versions where the kind may rotate by hand, an alias and a tag. */
  async function createKey(kind: Kind): Promise<{ keyId: string; instanceId: string | null; material?: Buffer }> {
    const instanceId = kind === 'default' ? null : kind.startsWith('hsm') ? server.hsmInstanceId : server.softwareInstanceId;
    const byok = kind.endsWith('byok');
    const keyId = await createKeyId(call, { ...(instanceId ? { DKMSInstanceId: instanceId } : {}), ...(byok ? { Origin: 'EXTERNAL' } : {}) });
    let material: Buffer | undefined;
    if (byok) {
      material = randomBytes(32);
      await importMaterial(call, keyId, material);
      // A second pair issued and never used: it must go too.
      await call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
    } else if (kind !== 'default') {
      await call('CreateKeyVersion', { KeyId: keyId });
    }
    await call('CreateAlias', { KeyId: keyId, AliasName: `alias/del-${keyId}` });
    await call('TagResource', { KeyId: keyId, Tags: JSON.stringify([{ TagKey: 'team', TagValue: 'a' }]) });
    return { keyId, instanceId, ...(material ? { material } : {}) };
  }

  const versionIdsOf = async (keyId: string) =>
    (await server.kms.deps.db.query<{ id: string }>('SELECT id FROM key_versions WHERE key_id = $1', [keyId])).rows.map((r) => r.id);
  const wrappingIdsOf = async (keyId: string) =>
    (await server.kms.deps.db.query<{ id: string }>('SELECT id FROM wrapping_keys WHERE key_id = $1', [keyId])).rows.map((r) => r.id);

  it.each(['hsm', 'software', 'default', 'hsm-byok', 'software-byok'] as const)(
    '%s key: at DeleteDate it is gone with its versions, aliases, tags and HSM objects; the quota units come back; old ciphertexts answer 404',
    async (kind) => {
      const { keyId, instanceId } = await createKey(kind);
      const blob = (await call('Encrypt', { KeyId: keyId, Plaintext: 'doomed' })).CiphertextBlob as string;
      const versionIds = await versionIdsOf(keyId);
      const wrappingIds = await wrappingIdsOf(keyId);
      expect(versionIds.length).toBe(kind === 'default' || kind.endsWith('byok') ? 1 : 2);
      if (kind.endsWith('byok')) expect(wrappingIds).toHaveLength(2);
      const tokenObjects = kind === 'hsm' || kind === 'hsm-byok' ? versionIds.length : 0;
      expect(await objectsNamed(server, [...versionIds, ...wrappingIds])).toBe(tokenObjects + wrappingIds.length);
      const usedBefore = instanceId ? await used(instanceId) : 0;

      const scheduled = await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
      expect(scheduled.RequestId).toBeDefined();
      const deleteDate = (await getKey(server.kms.deps.db, keyId))!.deleteDate!;
      // ScheduleKeyDeletion put the delayed job on the queue, at the DeleteDate.
      const job = await server.kms.jobs.queues.keyDeletion.getJob(keyDeletionJobId(keyId, deleteDate));
      expect(job?.data).toEqual({ keyId, deleteAt: deleteDate.toISOString() });
      expect(await job?.isDelayed()).toBe(true);

      clock.set(new Date(deleteDate.getTime() - 1000));
      expect((await runKeyDeletionSweep(server.kms.deps)).outcomes.deleted ?? []).not.toContain(keyId);
      expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('PendingDeletion');

      clock.set(deleteDate);
      expect((await runKeyDeletionSweep(server.kms.deps)).outcomes.deleted).toContain(keyId);

      expect(await sdkError(() => call('DescribeKey', { KeyId: keyId }))).toMatchObject({ code: 'Forbidden.KeyNotFound', statusCode: 404 });
      expect(await sdkError(() => call('Decrypt', { CiphertextBlob: blob }))).toMatchObject({ code: 'Forbidden.KeyNotFound', statusCode: 404 });
      expect((await sdkError(() => call('DescribeKey', { KeyId: `alias/del-${keyId}` }))).code).toBe('Forbidden.AliasNotFound');
      expect(await objectsNamed(server, [...versionIds, ...wrappingIds])).toBe(0);
      expect(await rowCount(server, 'SELECT 1 FROM key_versions WHERE key_id = $1', [keyId])).toBe(0);
      expect(await rowCount(server, 'SELECT 1 FROM wrapping_keys WHERE key_id = $1', [keyId])).toBe(0);
      expect(await rowCount(server, 'SELECT 1 FROM key_tags WHERE key_id = $1', [keyId])).toBe(0);
      expect(await rowCount(server, 'SELECT 1 FROM import_tokens WHERE key_id = $1', [keyId])).toBe(0);
      if (instanceId) expect(await used(instanceId)).toBe(usedBefore - versionIds.length);
      const audit = await listAudit(server.kms.deps.db, { keyId, action: 'DeleteKey' });
      expect(audit).toHaveLength(1);
      expect(audit[0]?.detail).toMatchObject({ versionIds: expect.arrayContaining(versionIds), wrappingKeyIds: expect.arrayContaining(wrappingIds) });

      // Once: the job, a second sweep or a retry find nothing left to do.
      expect(await deleteKeyIfDue(server.kms.deps, keyId, deleteDate)).toBe('stale');
      expect((await runKeyDeletionSweep(server.kms.deps)).outcomes.deleted ?? []).not.toContain(keyId);
    },
  );

  it('the job is conditional: not due early, stale once cancelled or re-scheduled; past DeleteDate a cancel is refused', async () => {
    const process = keyDeletionProcessor(server.kms.deps);
    const jobFor = (keyId: string, deleteAt: Date) => ({ data: { keyId, deleteAt: deleteAt.toISOString() } }) as Job<KeyDeletionJob>;
    const { keyId } = await createKey('hsm');
    await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
    const first = (await getKey(server.kms.deps.db, keyId))!.deleteDate!;
    expect(await process(jobFor(keyId, first))).toBe('not-due');

    // Cancelled, then scheduled again for a later date: the first job is stale, even when due.
    await call('CancelKeyDeletion', { KeyId: keyId });
    clock.advance(DAY);
    await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 8 });
    const second = (await getKey(server.kms.deps.db, keyId))!.deleteDate!;
    clock.set(first);
    expect(await process(jobFor(keyId, first))).toBe('stale');
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('PendingDeletion');

    // Past the DeleteDate the deletion may be half done: it can no longer be cancelled.
    clock.set(second);
    expect(await sdkError(() => call('CancelKeyDeletion', { KeyId: keyId }))).toMatchObject({ code: 'Rejected.StateModifiedFailed', statusCode: 409 });
    expect(await process(jobFor(keyId, second))).toBe('deleted');
    expect(await process(jobFor(keyId, second))).toBe('stale');
  });

  it('a deletion that fails half-way (objects partly destroyed) rolls its rows back and the next run finishes it', async () => {
    const { keyId } = await createKey('hsm');
    const versionIds = await versionIdsOf(keyId);
    expect(versionIds).toHaveLength(2);
    await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
    const deleteDate = (await getKey(server.kms.deps.db, keyId))!.deleteDate!;
    clock.set(deleteDate);

    // The HSM fails after destroying the first version's object (a token gone away mid-run).
    const real = server.kms.deps.hsm;
    let destroyed = 0;
    const failing: Hsm = Object.create(real, {
      destroyVersionKey: {
        value: async (id: string) => {
          if (destroyed++ === 1) throw unavailable('the token went away');
          return real.destroyVersionKey(id);
        },
      },
    }) as Hsm;
    await expect(deleteKeyIfDue({ ...server.kms.deps, hsm: failing }, keyId, deleteDate)).rejects.toMatchObject({ code: 'ServiceUnavailableTemporary' });
    expect(await objectsNamed(server, versionIds)).toBe(1);
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('PendingDeletion');
    expect(await versionIdsOf(keyId)).toHaveLength(2);

    // The retry destroys what is left (the destroyed object is a no-op) and removes the rows.
    expect(await deleteKeyIfDue(server.kms.deps, keyId, deleteDate)).toBe('deleted');
    expect(await objectsNamed(server, versionIds)).toBe(0);
    expect(await versionIdsOf(keyId)).toHaveLength(0);
  });
});

describe('with the real BullMQ workers', () => {
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

  it('the job ScheduleKeyDeletion schedules deletes the key when the clock reaches DeleteDate', async () => {
    const keyId = (await createKeyIn(call, server.hsmInstanceId)).keyId;
    const [versionId] = (await server.kms.deps.db.query<{ id: string }>('SELECT id FROM key_versions WHERE key_id = $1', [keyId])).rows.map((r) => r.id);
    await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
    const deleteDate = (await getKey(server.kms.deps.db, keyId))!.deleteDate!;
    const job = await server.kms.jobs.queues.keyDeletion.getJob(keyDeletionJobId(keyId, deleteDate));
    expect(await job?.isDelayed()).toBe(true);

    // Due by the service clock; BullMQ's own 7-day wake-up is brought forward (as the time machine does).
    clock.set(deleteDate);
    await job!.promote();
    await waitFor('the key to be deleted', async () => (await getKey(server.kms.deps.db, keyId)) === undefined);
    expect((await sdkError(() => call('DescribeKey', { KeyId: keyId }))).code).toBe('Forbidden.KeyNotFound');
    expect(await objectsNamed(server, [versionId!])).toBe(0);
  });
});
