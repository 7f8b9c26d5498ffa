import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { isoSeconds } from '../../src/domain/dates.js';
import { systemCaller } from '../../src/services/context.js';
import { updateInstance } from '../../src/services/instances.js';
import { listKeysDueForRotation, rotateKeyIfDue } from '../../src/services/rotation.js';
import { listAudit } from '../../src/store/audit.js';
import { updateKey } from '../../src/store/keys.js';
import { createInstanceIn } from '../helpers/fixtures.js';
import { type CallApi, KMS, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Seed 002 (key rotation) through the real SDKs, with an injected ManualClock: the service's
 * clock moves days ahead while the SDKs sign with the wall clock. Automatic rotation is driven
 * by calling the workers' use case (`rotateKeyIfDue`) directly; the workers are tested apart.
 */
const DAY = 86_400_000;
const SEVEN_DAYS = 7 * DAY;

let server: TestServer;
let call: CallApi;
let legacy: ReturnType<typeof legacyClient>;
// Whole seconds: Alibaba's dates have no milliseconds, so the arithmetic below is exact.
const clock = new ManualClock(new Date(Math.floor(Date.now() / 1000) * 1000));

beforeAll(async () => {
  server = await startServer({ clock });
  call = openApiClient(server.endpoint, server.admin);
  legacy = legacyClient(server.endpoint, server.admin);
});

afterAll(async () => {
  await server?.stop();
});

type Tier = 'SOFTWARE' | 'HSM';

/** A fresh instance per test: its quota counts only this test's versions. */
async function instance(type: Tier, keyQuota = 10): Promise<string> {
  return createInstanceIn(server, { type, keyQuota, qps: 1000 });
}

async function createKey(params: Record<string, unknown>): Promise<Record<string, any>> {
  return (await call('CreateKey', params)).KeyMetadata;
}

/** DescribeKey through 1.2.0, whose model keeps the rotation fields (and drops our extensions). */
async function describeLegacy(keyId: string) {
  return (await legacy.describeKey(new KMS.DescribeKeyRequest({ keyId }))).keyMetadata!;
}

const describeKey = async (keyId: string): Promise<Record<string, any>> => (await call('DescribeKey', { KeyId: keyId })).KeyMetadata;

async function versionsOf(keyId: string): Promise<Array<{ KeyVersionId: string; CreationDate: string; KeyVersionState: string }>> {
  return (await call('ListKeyVersions', { KeyId: keyId, PageSize: 100 })).KeyVersions.KeyVersion;
}

async function encrypt(keyId: string, plaintext: string) {
  const body = await legacy.encrypt(new KMS.EncryptRequest({ keyId, plaintext }));
  return { blob: body.ciphertextBlob!, versionId: body.keyVersionId! };
}

async function keyQuota(instanceId: string) {
  const r = await call('GetKmsInstanceQuotaInfos', { KmsInstanceId: instanceId, ResourceType: 'key' });
  return r.KmsInstanceQuotaInfos[0] as { ResourceQuota: number; UsedQuantity: number };
}

const due = async (keyId: string) => new Date((await describeKey(keyId)).NextRotationDate as string);

describe.each<Tier>(['SOFTWARE', 'HSM'])('seed 002 on a %s key', (tier) => {
  it('create with 7d → DescribeKey → Encrypt v1 → +7d rotates once → Encrypt v2, Decrypt v1 → manual rotation resets LastRotationDate → 3 quota units', async () => {
    const instanceId = await instance(tier);
    const t0 = clock.now();
    const created = await createKey({ DKMSInstanceId: instanceId, EnableAutomaticRotation: true, RotationInterval: '7d' });
    const keyId = created.KeyId as string;

    // DescribeKey, field by field (alibaba-api.md §3.1, §5.4), as the 1.2.0 SDK reads it.
    const d1 = await describeLegacy(keyId);
    const [v1] = await versionsOf(keyId);
    expect(d1).toMatchObject({
      automaticRotation: 'Enabled',
      rotationInterval: '604800s',
      creationDate: isoSeconds(t0),
      // Seed 002: a new key's LastRotationDate is its first version's creation.
      lastRotationDate: v1!.CreationDate,
      nextRotationDate: isoSeconds(new Date(t0.getTime() + SEVEN_DAYS)),
      primaryKeyVersion: v1!.KeyVersionId,
      protectionLevel: tier,
    });
    expect(v1!.CreationDate).toBe(isoSeconds(t0));

    const c1 = await encrypt(keyId, 'seed 002, version 1');
    expect(c1.versionId).toBe(v1!.KeyVersionId);

    // One second early: not due. At the due date: exactly one rotation.
    const firstDue = new Date(t0.getTime() + SEVEN_DAYS);
    clock.advance(SEVEN_DAYS - 1000);
    expect(await rotateKeyIfDue(server.kms.deps, keyId, firstDue)).toBe('not-due');
    expect(await versionsOf(keyId)).toHaveLength(1);
    clock.advance(1000);
    expect(await rotateKeyIfDue(server.kms.deps, keyId, firstDue)).toBe('rotated');
    expect(await rotateKeyIfDue(server.kms.deps, keyId, firstDue)).toBe('stale');

    const afterAuto = await versionsOf(keyId);
    expect(afterAuto).toHaveLength(2);
    const v2 = afterAuto[1]!;
    expect(v2.CreationDate).toBe(isoSeconds(firstDue));
    const d2 = await describeLegacy(keyId);
    expect(d2).toMatchObject({
      primaryKeyVersion: v2.KeyVersionId,
      lastRotationDate: isoSeconds(firstDue),
      // NextRotationDate = LastRotationDate + RotationInterval: advanced by the interval.
      nextRotationDate: isoSeconds(new Date(firstDue.getTime() + SEVEN_DAYS)),
      automaticRotation: 'Enabled',
    });

    // Encrypt uses the primary version; Decrypt the version the ciphertext names.
    const c2 = await encrypt(keyId, 'seed 002, version 2');
    expect(c2.versionId).toBe(v2.KeyVersionId);
    const old = await legacy.decrypt(new KMS.DecryptRequest({ ciphertextBlob: c1.blob }));
    expect([old.plaintext, old.keyVersionId]).toEqual(['seed 002, version 1', v1!.KeyVersionId]);
    const fresh = await legacy.decrypt(new KMS.DecryptRequest({ ciphertextBlob: c2.blob }));
    expect([fresh.plaintext, fresh.keyVersionId]).toEqual(['seed 002, version 2', v2.KeyVersionId]);

    // Manual rotation two days later: LastRotationDate = now, NextRotationDate = now + 7d.
    clock.advance(2 * DAY);
    const manualAt = clock.now();
    const made = (await legacy.createKeyVersion(new KMS.CreateKeyVersionRequest({ keyId }))).keyVersion!;
    expect(made.keyId).toBe(keyId);
    expect(made.creationDate).toBe(isoSeconds(manualAt));
    const d3 = await describeLegacy(keyId);
    expect(d3).toMatchObject({
      primaryKeyVersion: made.keyVersionId,
      lastRotationDate: isoSeconds(manualAt),
      nextRotationDate: isoSeconds(new Date(manualAt.getTime() + SEVEN_DAYS)),
    });
    // The job of the old due date finds the date moved.
    expect(await rotateKeyIfDue(server.kms.deps, keyId, new Date(firstDue.getTime() + SEVEN_DAYS))).toBe('stale');
    expect((await encrypt(keyId, 'v3')).versionId).toBe(made.keyVersionId);

    // Every version is kept and decrypts; three versions consume three units (seed 002).
    const all = await versionsOf(keyId);
    expect(all.map((v) => v.KeyVersionId)).toEqual([v1!.KeyVersionId, v2.KeyVersionId, made.keyVersionId]);
    expect(all.map((v) => v.KeyVersionState)).toEqual(['Enabled', 'Enabled', 'Enabled']);
    expect(await keyQuota(instanceId)).toEqual({ ResourceType: 'key', ResourceQuota: 10, UsedQuantity: 3 });
    const described = await call('DescribeKeyVersion', { KeyId: keyId, KeyVersionId: v1!.KeyVersionId });
    expect(described.KeyVersion).toEqual({
      KeyId: keyId,
      KeyVersionId: v1!.KeyVersionId,
      CreationDate: isoSeconds(t0),
      KeyVersionState: 'Enabled',
      // Usage per key version (issue 17): what this version has sealed so far, as last flushed.
      EncryptionCount: expect.any(Number),
    });
    if (tier === 'HSM') {
      for (const v of all) expect(await server.kms.deps.hsm.hasVersionKey(v.KeyVersionId)).toBe(true);
    }
  });

  it('one due date makes one version: twice in a row, and five at once', async () => {
    const instanceId = await instance(tier);
    const keyId = (await createKey({ DKMSInstanceId: instanceId, EnableAutomaticRotation: true, RotationInterval: '7d' })).KeyId as string;
    const dueAt = await due(keyId);
    clock.set(dueAt);
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => rotateKeyIfDue(server.kms.deps, keyId, dueAt)));
    expect(outcomes.sort()).toEqual(['rotated', 'stale', 'stale', 'stale', 'stale']);
    expect(await rotateKeyIfDue(server.kms.deps, keyId, dueAt)).toBe('stale');
    const versions = await versionsOf(keyId);
    expect(versions).toHaveLength(2);
    expect((await describeKey(keyId)).PrimaryKeyVersion).toBe(versions[1]!.KeyVersionId);
    expect((await keyQuota(instanceId)).UsedQuantity).toBe(2);
    const audit = await listAudit(server.kms.deps.db, { keyId });
    expect(audit.filter((e) => e.action === 'AutomaticRotation')).toHaveLength(1);
  });
});

describe('rotateKeyIfDue answers stale when its due date no longer holds', () => {
  it('an unknown key, rotation turned off, a policy that moved the date; listKeysDueForRotation honours limit and exclusions', async () => {
    expect(await rotateKeyIfDue(server.kms.deps, 'key-doesnotexist0000000000', clock.now())).toBe('stale');

    const off = (await createKey({ DKMSInstanceId: server.softwareInstanceId, EnableAutomaticRotation: true, RotationInterval: '7d' })).KeyId as string;
    const offDue = await due(off);
    await call('UpdateRotationPolicy', { KeyId: off, EnableAutomaticRotation: false });
    clock.set(new Date(offDue.getTime() + DAY));
    expect(await rotateKeyIfDue(server.kms.deps, off, offDue)).toBe('stale');

    const moved = (await createKey({ DKMSInstanceId: server.softwareInstanceId, EnableAutomaticRotation: true, RotationInterval: '7d' })).KeyId as string;
    const firstDue = await due(moved);
    await call('UpdateRotationPolicy', { KeyId: moved, EnableAutomaticRotation: true, RotationInterval: '30d' });
    const newDue = await due(moved);
    expect(newDue.getTime() - firstDue.getTime()).toBe(23 * DAY);
    clock.set(newDue);
    expect(await rotateKeyIfDue(server.kms.deps, moved, firstDue)).toBe('stale');
    expect(await versionsOf(off)).toHaveLength(1);
    expect(await versionsOf(moved)).toHaveLength(1);

    const dueNow = await listKeysDueForRotation(server.kms.deps.db, clock.now(), 1000, []);
    expect(dueNow.map((k) => k.keyId)).toContain(moved);
    expect(dueNow.map((k) => k.keyId)).not.toContain(off);
    expect(dueNow.find((k) => k.keyId === moved)?.nextRotationDate).toEqual(newDue);
    expect((await listKeysDueForRotation(server.kms.deps.db, clock.now(), 1000, [moved])).map((k) => k.keyId)).not.toContain(moved);
    expect(await listKeysDueForRotation(server.kms.deps.db, clock.now(), 1, [])).toHaveLength(1);
    expect(await rotateKeyIfDue(server.kms.deps, moved, newDue)).toBe('rotated');
  });
});

describe('suspension (seed 002: Disabled or PendingDeletion pauses rotation)', () => {
  it.each([
    ['DisableKey', 'EnableKey', {}],
    ['ScheduleKeyDeletion', 'CancelKeyDeletion', { PendingWindowInDays: 30 }],
  ] as const)('%s → due dates pass → no rotation → %s → exactly one rotation', async (pause, resume, extra) => {
    const keyId = (await createKey({ DKMSInstanceId: server.softwareInstanceId, EnableAutomaticRotation: true, RotationInterval: '7d' })).KeyId as string;
    const dueAt = await due(keyId);
    await call(pause, { KeyId: keyId, ...extra });
    expect((await describeKey(keyId)).AutomaticRotation).toBe('Suspended');

    // Two intervals pass while suspended.
    clock.set(new Date(dueAt.getTime() + SEVEN_DAYS + DAY));
    expect(await rotateKeyIfDue(server.kms.deps, keyId, dueAt)).toBe('suspended');
    expect(await versionsOf(keyId)).toHaveLength(1);
    const suspended = await describeKey(keyId);
    expect(suspended).toMatchObject({ AutomaticRotation: 'Suspended', NextRotationDate: isoSeconds(dueAt), RotationInterval: '604800s' });
    // The sweeper's query skips suspended keys.
    expect((await listKeysDueForRotation(server.kms.deps.db, clock.now(), 1000, [])).map((k) => k.keyId)).not.toContain(keyId);

    // Re-enabling schedules the missed due date at once (the job's delay is 0).
    const schedule = vi.spyOn(server.kms.deps.jobs, 'scheduleRotation');
    try {
      await call(resume, { KeyId: keyId });
      expect(schedule).toHaveBeenCalledWith(keyId, dueAt);
    } finally {
      schedule.mockRestore();
    }
    expect((await describeKey(keyId)).AutomaticRotation).toBe('Enabled');
    expect((await listKeysDueForRotation(server.kms.deps.db, clock.now(), 1000, [])).map((k) => k.keyId)).toContain(keyId);

    const resumedAt = clock.now();
    expect(await rotateKeyIfDue(server.kms.deps, keyId, dueAt)).toBe('rotated');
    // Once, not once per missed interval: the next date is a full interval from now.
    const after = await describeKey(keyId);
    expect(after.LastRotationDate).toBe(isoSeconds(resumedAt));
    expect(after.NextRotationDate).toBe(isoSeconds(new Date(resumedAt.getTime() + SEVEN_DAYS)));
    expect(await rotateKeyIfDue(server.kms.deps, keyId, new Date(after.NextRotationDate))).toBe('not-due');
    expect(await rotateKeyIfDue(server.kms.deps, keyId, dueAt)).toBe('stale');
    expect(await versionsOf(keyId)).toHaveLength(2);
  });
});

describe('at the quota limit', () => {
  it.each<Tier>(['SOFTWARE', 'HSM'])(
    '%s: CreateKeyVersion is Rejected.LimitExceeded and changes nothing; the due rotation is refused, shown as RotationFailure, and done once the quota is raised',
    async (tier) => {
      const instanceId = await instance(tier, 2);
      const keyId = (await createKey({ DKMSInstanceId: instanceId, EnableAutomaticRotation: true, RotationInterval: '7d' })).KeyId as string;
      await createKey({ DKMSInstanceId: instanceId });
      const before = await describeKey(keyId);

      const refused = await sdkError(() => call('CreateKeyVersion', { KeyId: keyId }));
      expect([refused.code, refused.statusCode]).toEqual(['Rejected.LimitExceeded', 400]);
      expect(await describeKey(keyId)).toEqual(before);
      expect(await versionsOf(keyId)).toHaveLength(1);
      expect((await keyQuota(instanceId)).UsedQuantity).toBe(2);

      const dueAt = new Date(before.NextRotationDate as string);
      clock.set(dueAt);
      expect(await rotateKeyIfDue(server.kms.deps, keyId, dueAt)).toBe('refused');
      const failed = await describeKey(keyId);
      expect(failed.RotationFailure).toMatch(/^Rejected\.LimitExceeded: /);
      // The due date stays, so the sweeper finds the key again; nothing else changed.
      expect(failed).toMatchObject({ NextRotationDate: before.NextRotationDate, PrimaryKeyVersion: before.PrimaryKeyVersion, LastRotationDate: before.LastRotationDate });
      expect((await listKeysDueForRotation(server.kms.deps.db, clock.now(), 1000, [])).map((k) => k.keyId)).toContain(keyId);
      expect(await versionsOf(keyId)).toHaveLength(1);
      expect(await rotateKeyIfDue(server.kms.deps, keyId, dueAt)).toBe('refused');
      expect(await versionsOf(keyId)).toHaveLength(1);
      // 1.2.0 drops the extension field silently.
      expect(await describeLegacy(keyId)).not.toHaveProperty('rotationFailure');

      await updateInstance(server.kms.deps, instanceId, { keyQuota: 3 }, systemCaller);
      expect(await rotateKeyIfDue(server.kms.deps, keyId, dueAt)).toBe('rotated');
      const rotated = await describeKey(keyId);
      expect(rotated).not.toHaveProperty('RotationFailure');
      expect(rotated.NextRotationDate).toBe(isoSeconds(new Date(dueAt.getTime() + SEVEN_DAYS)));
      expect(await versionsOf(keyId)).toHaveLength(2);
      expect(await keyQuota(instanceId)).toMatchObject({ ResourceQuota: 3, UsedQuantity: 3 });
      if (tier === 'HSM') expect(await server.kms.deps.hsm.hasVersionKey(rotated.PrimaryKeyVersion)).toBe(true);
    },
  );
});

describe('a key the policy does not let rotate automatically', () => {
  it('rotation switched on by older rules (a BYOK key, set in the store) is refused with RotationFailure, never rotated', async () => {
    const keyId = (await createKey({ DKMSInstanceId: server.softwareInstanceId, Origin: 'EXTERNAL' })).KeyId as string;
    const dueAt = new Date(clock.now().getTime() - 1000);
    // What a row written before the who-may-rotate table could hold.
    await updateKey(server.kms.deps.db, keyId, { state: 'Enabled', automaticRotation: 'Enabled', rotationIntervalSeconds: 604_800, nextRotationDate: dueAt });
    expect(await rotateKeyIfDue(server.kms.deps, keyId, dueAt)).toBe('refused');
    const described = await describeKey(keyId);
    expect(described.RotationFailure).toMatch(/^Rejected\.UnsupportedOperation: .*imported material/);
    expect(described.NextRotationDate).toBe(isoSeconds(dueAt));
    expect(await versionsOf(keyId)).toHaveLength(1);
    const audit = await listAudit(server.kms.deps.db, { keyId, action: 'AutomaticRotation' });
    expect(audit.map((e) => e.detail)).toEqual([expect.objectContaining({ outcome: 'refused', code: 'Rejected.UnsupportedOperation' })]);
  });
});
