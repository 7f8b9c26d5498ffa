import { randomBytes } from 'node:crypto';
import type { Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { wrapKeyMaterial } from '../../src/domain/client-wrap.js';
import { findObjects } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import * as m from '../../src/hsm/pkcs11/mechanisms.js';
import {
  type MaterialExpiryJob,
  materialExpiryJobId,
  materialExpiryProcessor,
  runMaterialExpirySweep,
  scheduleMaterialExpiry,
} from '../../src/jobs/material-expiry.js';
import { startJobWorkers } from '../../src/jobs/workers.js';
import { destroyExpiredWrappingKeys } from '../../src/services/wrapping-keys.js';
import { listAudit } from '../../src/store/audit.js';
import type { Queryable } from '../../src/store/db.js';
import { getKey, updateKey } from '../../src/store/keys.js';
import { getVersion } from '../../src/store/versions.js';
import { decryptBlobWithMaterial } from '../helpers/byok.js';
import { createKeyIn } from '../helpers/fixtures.js';
import { importMaterial, waitFor } from '../helpers/jobs.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';
import { withTokenSession } from '../helpers/token-session.js';

/**
 * Seed 000, step 4 and FAQ: imported material expires at KeyMaterialExpireUnix and KMS
 * deletes it; the same material brings the key back. Driven with an injected ManualClock
 * (the sweeper and the processor called directly), and with the real BullMQ delayed jobs,
 * whose due-ness the same clock decides (no wall-clock windows).
 */
const HOUR = 3600_000;

const tokenObjects = (server: TestServer, versionId: string): Promise<number> =>
  withTokenSession(server, (p11, session) => findObjects(p11, session, m.secretKeyById(versionId)).length);

/** A job as ImportKeyMaterial schedules it: for the key's primary version (each version has its own expiry). */
const fakeJob = async (db: Queryable, keyId: string, expireAt: Date) =>
  ({ data: { keyId, versionId: (await getKey(db, keyId))!.primaryVersionId, expireAt: expireAt.toISOString() } }) as Job<MaterialExpiryJob>;

describe('with an injected clock', () => {
  let server: TestServer;
  let call: CallApi;
  const clock = new ManualClock(new Date());

  beforeAll(async () => {
    // The clock will move days ahead of the SDK's request timestamps: widen the skew window.
    server = await startServer({ clock, env: { KMS_SIGNATURE_MAX_SKEW_SECONDS: String(30 * 86_400) } });
    call = openApiClient(server.endpoint, server.admin);
  });

  afterAll(async () => {
    await server?.stop();
  });

  const createKey = async (instance: 'hsm' | 'software') =>
    (await createKeyIn(call, instance === 'hsm' ? server.hsmInstanceId : server.softwareInstanceId, { Origin: 'EXTERNAL' })).keyId;
  const describe_ = async (keyId: string) => (await call('DescribeKey', { KeyId: keyId })).KeyMetadata;

  it.each(['hsm', 'software'] as const)('%s key: the sweeper deletes the material at expiry; re-import restores it and old ciphertexts decrypt', async (tier) => {
    const keyId = await createKey(tier);
    const material = randomBytes(32);
    const expireUnix = Math.floor(clock.now().getTime() / 1000) + 3600;
    await importMaterial(call, keyId, material, expireUnix);
    const described = await describe_(keyId);
    expect(described.MaterialExpireTime).toBe(new Date(expireUnix * 1000).toISOString().replace('.000Z', 'Z'));
    const versionId = described.PrimaryKeyVersion as string;
    const old = await call('Encrypt', { KeyId: keyId, Plaintext: `${tier} before expiry` });

    // Not due yet: nothing happens.
    clock.advance(HOUR - 1000);
    expect((await runMaterialExpirySweep(server.kms.deps)).expired).not.toContain(keyId);
    expect((await describe_(keyId)).KeyState).toBe('Enabled');

    clock.advance(1000);
    expect((await runMaterialExpirySweep(server.kms.deps)).expired).toEqual([keyId]);
    const expired = await describe_(keyId);
    expect(expired).toMatchObject({ KeyState: 'PendingImport', MaterialExpireTime: '' });
    const version = await getVersion(server.kms.deps.db, versionId);
    expect(version?.hasMaterial).toBe(false);
    expect(version?.sealedMaterial).toBeNull();
    expect(await tokenObjects(server, versionId)).toBe(0);
    expect((await sdkError(() => call('Decrypt', { CiphertextBlob: old.CiphertextBlob }))).code).toBe('Rejected.PendingImport');
    const audit = await listAudit(server.kms.deps.db, { keyId, action: 'ExpireKeyMaterial' });
    expect(audit).toHaveLength(1);
    expect(audit[0]?.accessKeyId).toBe('system');

    // A second run finds nothing: the effect applies once.
    expect((await runMaterialExpirySweep(server.kms.deps)).expired).toEqual([]);

    await importMaterial(call, keyId, material);
    expect((await describe_(keyId)).KeyState).toBe('Enabled');
    expect((await call('Decrypt', { CiphertextBlob: old.CiphertextBlob })).Plaintext).toBe(`${tier} before expiry`);
    const fresh = await call('Encrypt', { KeyId: keyId, Plaintext: 'restored' });
    expect(decryptBlobWithMaterial(fresh.CiphertextBlob, material).plaintext).toBe('restored');
  });

  it('the job processor is conditional and idempotent: not-due early, expired once, stale after a re-import moved the expiry', async () => {
    const process = materialExpiryProcessor(server.kms.deps);
    const keyId = await createKey('hsm');
    const material = randomBytes(32);
    const first = new Date((Math.floor(clock.now().getTime() / 1000) + 600) * 1000);
    await importMaterial(call, keyId, material, first.getTime() / 1000);
    expect(await process(await fakeJob(server.kms.deps.db, keyId, first))).toBe('not-due');

    // Re-import the same material with a later expiry: the job for the first expiry is stale.
    const second = new Date(first.getTime() + 2 * HOUR);
    await importMaterial(call, keyId, material, second.getTime() / 1000);
    clock.set(new Date(first.getTime() + 1000));
    expect(await process(await fakeJob(server.kms.deps.db, keyId, first))).toBe('stale');
    expect((await describe_(keyId)).KeyState).toBe('Enabled');

    clock.set(second);
    expect(await process(await fakeJob(server.kms.deps.db, keyId, second))).toBe('expired');
    expect(await process(await fakeJob(server.kms.deps.db, keyId, second))).toBe('stale');
    expect((await describe_(keyId)).KeyState).toBe('PendingImport');
  });

  it('a PendingDeletion key whose material expires stays PendingDeletion', async () => {
    const keyId = await createKey('hsm');
    const expireAt = new Date((Math.floor(clock.now().getTime() / 1000) + 60) * 1000);
    await importMaterial(call, keyId, randomBytes(32), expireAt.getTime() / 1000);
    const versionId = (await describe_(keyId)).PrimaryKeyVersion as string;
    await updateKey(server.kms.deps.db, keyId, { state: 'PendingDeletion' });
    clock.set(expireAt);
    expect(await materialExpiryProcessor(server.kms.deps)(await fakeJob(server.kms.deps.db, keyId, expireAt))).toBe('expired');
    expect((await describe_(keyId)).KeyState).toBe('PendingDeletion');
    expect(await tokenObjects(server, versionId)).toBe(0);
  });

  it('an import token expires after 24 hours; the cleanup then destroys its wrapping pair in the HSM', async () => {
    const keyId = await createKey('software');
    const material = randomBytes(32);
    const params = await call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
    expect(Date.parse(params.TokenExpireTime)).toBe((Math.floor(clock.now().getTime() / 1000) + 86_400) * 1000);
    const encrypted = wrapKeyMaterial(Buffer.from(params.PublicKey, 'base64'), 'RSAES_OAEP_SHA_256', material).toString('base64');
    const { rows } = await server.kms.deps.db.query<{ id: string }>('SELECT id FROM wrapping_keys WHERE key_id = $1', [keyId]);
    const wrappingKeyId = rows[0]!.id;

    const exists = async () => (await server.kms.deps.db.query('SELECT 1 FROM wrapping_keys WHERE id = $1', [wrappingKeyId])).rows.length === 1;
    clock.advance(24 * HOUR - 1000);
    // (Pairs of earlier tests, issued at earlier clock times, may go now; this one stays.)
    await destroyExpiredWrappingKeys(server.kms.deps);
    expect(await exists()).toBe(true);
    clock.advance(1000);
    const expired = await sdkError(() => call('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: encrypted, ImportToken: params.ImportToken }));
    expect(expired).toMatchObject({ code: 'ExpiredImportToken', statusCode: 400 });
    expect(expired.data.Message).toBe('import token is expired.');

    expect(await destroyExpiredWrappingKeys(server.kms.deps)).toBeGreaterThanOrEqual(1);
    expect(await exists()).toBe(false);
    await withTokenSession(server, (p11, session) => expect(findObjects(p11, session, m.privateKeyById(wrappingKeyId))).toHaveLength(0));
    // Still expired (not "invalid") once the pair is gone: the token's own expiry is checked first.
    expect((await sdkError(() => call('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: encrypted, ImportToken: params.ImportToken }))).code).toBe(
      'ExpiredImportToken',
    );
  });
});

describe('with the real BullMQ workers', () => {
  let server: TestServer;
  let call: CallApi;
  let workers: Awaited<ReturnType<typeof startJobWorkers>>;
  // Due-ness is the service clock's: the tests move it and bring BullMQ's wake-up forward
  // (Job.promote, as the time machine's sweep does) instead of waiting for a wall-clock window.
  const clock = new ManualClock(new Date());

  beforeAll(async () => {
    server = await startServer({ clock, env: { KMS_WRAPPING_KEY_POOL_SIZE: '2', KMS_SIGNATURE_MAX_SKEW_SECONDS: String(30 * 86_400) } });
    call = openApiClient(server.endpoint, server.admin);
    workers = await startJobWorkers(server.kms, { sweeper: false });
  });

  afterAll(async () => {
    await workers?.close();
    await server?.stop();
  });

  const keyState = async (keyId: string) => (await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState as string;

  it('the worker fills the wrapping key pool at start and refills it after a take', async () => {
    const pooled = async () =>
      Number((await server.kms.deps.db.query<{ n: string }>('SELECT count(*) AS n FROM wrapping_keys WHERE key_id IS NULL')).rows[0]?.n);
    await waitFor('the pool to fill', async () => (await pooled()) === 2);
    const keyId = (await createKeyIn(call, server.hsmInstanceId, { Origin: 'EXTERNAL' })).keyId;
    await call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_PKCS1_V1_5' });
    const audit = await listAudit(server.kms.deps.db, { keyId, action: 'GetParametersForImport' });
    expect(audit[0]?.detail?.pooled).toBe(true);
    await waitFor('the pool to be refilled', async () => (await pooled()) === 2);
  });

  it('the delayed job ImportKeyMaterial schedules deletes the material when the clock reaches KeyMaterialExpireUnix', async () => {
    const keyId = (await createKeyIn(call, server.hsmInstanceId, { Origin: 'EXTERNAL' })).keyId;
    const material = randomBytes(32);
    const expireUnix = Math.floor(clock.now().getTime() / 1000) + 3600;
    await importMaterial(call, keyId, material, expireUnix);
    const versionId = (await call('DescribeKey', { KeyId: keyId })).KeyMetadata.PrimaryKeyVersion as string;
    const job = await server.kms.jobs.queues.materialExpiry.getJob(materialExpiryJobId(versionId, new Date(expireUnix * 1000)));
    expect(job?.data).toEqual({ keyId, versionId, expireAt: new Date(expireUnix * 1000).toISOString() });
    expect(await job?.isDelayed()).toBe(true);
    expect(job?.delay).toBeGreaterThan(3_590_000);
    expect(await keyState(keyId)).toBe('Enabled');

    clock.set(new Date(expireUnix * 1000));
    await job!.promote();
    await waitFor('the material to expire', async () => (await keyState(keyId)) === 'PendingImport');
    expect(await tokenObjects(server, versionId)).toBe(0);
    await importMaterial(call, keyId, material);
    expect((await call('Encrypt', { KeyId: keyId, Plaintext: 'back' })).KeyVersionId).toBe(versionId);
  });

  it('a job that fires before the material is due (a scheduler clock running ahead) is delayed again, not dropped', async () => {
    const keyId = (await createKeyIn(call, server.softwareInstanceId, { Origin: 'EXTERNAL' })).keyId;
    const expireAt = new Date((Math.floor(clock.now().getTime() / 1000) + 3600) * 1000);
    await importMaterial(call, keyId, randomBytes(32), expireAt.getTime() / 1000);
    const queue = server.kms.jobs.queues.materialExpiry;
    const versionId = (await call('DescribeKey', { KeyId: keyId })).KeyMetadata.PrimaryKeyVersion as string;
    const jobId = materialExpiryJobId(versionId, expireAt);
    await queue.remove(jobId);
    // The same job, scheduled by a process whose clock already says expireAt: no delay.
    await scheduleMaterialExpiry(queue, new ManualClock(expireAt), { keyId, versionId }, expireAt);
    await waitFor('the early job to run and be delayed again', async () => {
      const job = await queue.getJob(jobId);
      return job?.attemptsStarted === 1 && (await job.isDelayed());
    });
    // Delayed for what is left by the service clock (an hour), not dropped and not failed.
    const delayed = (await queue.getJob(jobId))!;
    expect(delayed.delay).toBeGreaterThan(3_500_000);
    expect(await keyState(keyId)).toBe('Enabled');

    clock.set(expireAt);
    await delayed.promote();
    await waitFor('the material to expire', async () => (await keyState(keyId)) === 'PendingImport');
  });
});
