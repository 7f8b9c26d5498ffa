import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isoSeconds } from '../../src/domain/dates.js';
import { type CallApi, KMS, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 14 §2 through the real SDKs: every row of the who-may-rotate table (domain/key.ts,
 * README "Key rotation") and the RotationInterval bounds of seed 002 (7–365 days).
 * The BYOK rows' import-specific cells (NEW_KEY_MATERIAL) are in byok-rotation.test.ts.
 */
let server: TestServer;
let call: CallApi;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
});

afterAll(async () => {
  await server?.stop();
});

const OK = 'Success';
const U = 'Rejected.UnsupportedOperation';
const INVALID = 'InvalidParameter';

/** The code an action answers (`Success` when it succeeds), with the HTTP status checked to match. */
async function outcome(action: string, params: Record<string, unknown>): Promise<string> {
  try {
    await call(action, params);
    return OK;
  } catch (error) {
    const e = error as { data?: { Code?: string; HttpStatus?: number }; statusCode?: number };
    const code = e.data?.Code ?? String(error);
    const expectedStatus = code.startsWith('Rejected.') && code !== U && code !== 'Rejected.LimitExceeded' ? 409 : code.startsWith('Forbidden.') ? 404 : 400;
    expect([code, e.statusCode]).toEqual([code, expectedStatus]);
    return code;
  }
}

const describeKey = async (keyId: string): Promise<Record<string, any>> => (await call('DescribeKey', { KeyId: keyId })).KeyMetadata;
const versionCount = async (keyId: string): Promise<number> => (await call('ListKeyVersions', { KeyId: keyId })).TotalCount as number;

type Row = 'software-generated' | 'software-byok' | 'hsm-generated' | 'hsm-byok' | 'default-generated' | 'default-byok';

function createParams(row: Row): Record<string, unknown> {
  switch (row) {
    case 'software-generated':
      return { DKMSInstanceId: server.softwareInstanceId };
    case 'software-byok':
      return { DKMSInstanceId: server.softwareInstanceId, Origin: 'EXTERNAL' };
    case 'hsm-generated':
      return { DKMSInstanceId: server.hsmInstanceId };
    case 'hsm-byok':
      return { DKMSInstanceId: server.hsmInstanceId, Origin: 'EXTERNAL' };
    case 'default-generated':
      return {};
    case 'default-byok':
      return { Origin: 'EXTERNAL' };
  }
}

/**
 * Per row: CreateKey with rotation 7d | UpdateRotationPolicy to 30d | CreateKeyVersion.
 * BYOK keys are asked before any material is imported: the key's kind answers first, except
 * SOFTWARE BYOK's CreateKeyVersion, which exists (it rotates in imported material) and so
 * meets the state check (byok-rotation.test.ts runs it on an Enabled key).
 */
const TABLE: ReadonlyArray<[Row, createWith7d: string, update30d: string, createKeyVersion: string]> = [
  ['software-generated', OK, OK, OK],
  ['software-byok', U, U, 'Rejected.PendingImport'],
  ['hsm-generated', OK, OK, OK],
  ['hsm-byok', U, U, U],
  // Default keys: 365 days, fixed (seed 002), so 7d and 30d are invalid periods; no manual rotation.
  ['default-generated', INVALID, INVALID, U],
  ['default-byok', U, U, U],
];

describe('who may rotate, row by row (seed 002)', () => {
  it.each(TABLE)('%s: CreateKey 7d → %s, UpdateRotationPolicy 30d → %s, CreateKeyVersion → %s', async (row, create7d, update30d, manual) => {
    expect(await outcome('CreateKey', { ...createParams(row), EnableAutomaticRotation: true, RotationInterval: '7d' })).toBe(create7d);

    const keyId = (await call('CreateKey', createParams(row))).KeyMetadata.KeyId as string;
    const before = await describeKey(keyId);
    expect(before.AutomaticRotation).toBe('Disabled');
    expect(await outcome('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: true, RotationInterval: '30d' })).toBe(update30d);
    const afterPolicy = await describeKey(keyId);
    if (update30d === OK) {
      expect(afterPolicy).toMatchObject({ AutomaticRotation: 'Enabled', RotationInterval: '2592000s' });
      expect(afterPolicy.NextRotationDate).toBe(isoSeconds(new Date(Date.parse(afterPolicy.LastRotationDate) + 30 * 86_400_000)));
    } else {
      expect(afterPolicy).toEqual(before);
    }

    expect(await outcome('CreateKeyVersion', { KeyId: keyId })).toBe(manual);
    expect(await versionCount(keyId)).toBe(manual === OK ? 2 : 1);
    // Turning rotation off is always possible on an Enabled key, and a no-op where it was never on.
    if (before.KeyState === 'Enabled') {
      expect(await outcome('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: false })).toBe(OK);
      const off = await describeKey(keyId);
      expect(off.AutomaticRotation).toBe('Disabled');
      expect(off).not.toHaveProperty('NextRotationDate');
      expect(off).not.toHaveProperty('RotationInterval');
    }
  });

  it('refusals say why', async () => {
    const hsmByok = (await call('CreateKey', createParams('hsm-byok'))).KeyMetadata.KeyId as string;
    const refused = await sdkError(() => call('CreateKeyVersion', { KeyId: hsmByok }));
    expect(refused.message).toContain('hardware instance with imported material');
    const defaultKey = (await call('CreateKey', {})).KeyMetadata.KeyId as string;
    expect((await sdkError(() => call('CreateKeyVersion', { KeyId: defaultKey }))).message).toContain('Default keys rotate only automatically');
  });

  it('asymmetric keys (issue 15): never rotate, on either tier, automatically or by hand', async () => {
    for (const instance of [server.softwareInstanceId, server.hsmInstanceId]) {
      expect(await outcome('CreateKey', { DKMSInstanceId: instance, KeySpec: 'RSA_2048', EnableAutomaticRotation: true, RotationInterval: '7d' })).toBe(U);
      const keyId = (await call('CreateKey', { DKMSInstanceId: instance, KeySpec: 'EC_P256' })).KeyMetadata.KeyId as string;
      expect(await outcome('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: true, RotationInterval: '30d' })).toBe(U);
      expect(await outcome('CreateKeyVersion', { KeyId: keyId })).toBe(U);
      expect((await sdkError(() => call('CreateKeyVersion', { KeyId: keyId }))).message).toContain('Asymmetric keys cannot rotate');
    }
  });

  it('default keys: automatic rotation at the fixed 365 days, with or without RotationInterval, also through 1.2.0', async () => {
    const legacy = legacyClient(server.endpoint, server.admin);
    const created = await legacy.createKey(new KMS.CreateKeyRequest({ enableAutomaticRotation: true }));
    const meta = created.keyMetadata!;
    expect(meta).toMatchObject({ automaticRotation: 'Enabled', rotationInterval: '31536000s' });
    expect(meta.nextRotationDate).toBe(isoSeconds(new Date(Date.parse(meta.lastRotationDate!) + 365 * 86_400_000)));
    const explicit = (await call('CreateKey', { EnableAutomaticRotation: true, RotationInterval: '365d' })).KeyMetadata;
    expect(explicit.RotationInterval).toBe('31536000s');
    const keyId = explicit.KeyId as string;
    // The period cannot be changed; rotation can be turned off and on again.
    expect(await outcome('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: true, RotationInterval: '364d' })).toBe(INVALID);
    expect(await outcome('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: false })).toBe(OK);
    expect((await describeKey(keyId)).AutomaticRotation).toBe('Disabled');
    await legacy.updateRotationPolicy(new KMS.UpdateRotationPolicyRequest({ keyId, enableAutomaticRotation: true }));
    expect(await describeKey(keyId)).toMatchObject({ AutomaticRotation: 'Enabled', RotationInterval: '31536000s' });
  });
});

describe('RotationInterval (integer[d|h|m|s], 7–365 days; DescribeKey always in seconds)', () => {
  const ACCEPTED: ReadonlyArray<[string, string]> = [
    ['7d', '604800s'],
    ['365d', '31536000s'],
    ['168h', '604800s'],
    ['604800s', '604800s'],
    ['10080m', '604800s'],
    ['31536000s', '31536000s'],
    ['30d', '2592000s'],
  ];
  const REFUSED = ['6d', '366d', '604799s', '31536001s', '167h', 'weekly', '7', '7D', '7 d', '-7d', '+7d', '7.5d', 'd', '1e3d', '７d', '99999999999999999d'];

  it.each(ACCEPTED)('UpdateRotationPolicy and CreateKey accept %s, shown as %s', async (interval, shown) => {
    const keyId = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string;
    await call('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: true, RotationInterval: interval });
    expect((await describeKey(keyId)).RotationInterval).toBe(shown);
    const created = (await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId, EnableAutomaticRotation: true, RotationInterval: interval })).KeyMetadata;
    expect(created.RotationInterval).toBe(shown);
  });

  it.each(REFUSED)('%s → InvalidParameter 400, nothing changes', async (interval) => {
    const keyId = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, EnableAutomaticRotation: true, RotationInterval: '30d' })).KeyMetadata.KeyId as string;
    const before = await describeKey(keyId);
    const error = await sdkError(() => call('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: true, RotationInterval: interval }));
    expect([error.code, error.statusCode]).toEqual([INVALID, 400]);
    expect(error.message).toContain('RotationInterval');
    expect(await describeKey(keyId)).toEqual(before);
    const created = await sdkError(() => call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, EnableAutomaticRotation: true, RotationInterval: interval }));
    expect([created.code, created.statusCode]).toEqual([INVALID, 400]);
  });

  it('EnableAutomaticRotation is required and boolean; enabling needs an interval on an instance key', async () => {
    const keyId = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string;
    expect(await outcome('UpdateRotationPolicy', { KeyId: keyId, RotationInterval: '7d' })).toBe('MissingParameter');
    expect(await outcome('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: 'yes', RotationInterval: '7d' })).toBe(INVALID);
    expect(await outcome('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: true })).toBe(INVALID);
    expect((await describeKey(keyId)).AutomaticRotation).toBe('Disabled');
  });
});

describe('state (the CRYPTO row: only Enabled keys rotate or change their policy)', () => {
  it('Disabled → Rejected.Disabled, PendingDeletion → Rejected.PendingDeletion, nothing changes', async () => {
    for (const [pause, params, code] of [
      ['DisableKey', {}, 'Rejected.Disabled'],
      ['ScheduleKeyDeletion', { PendingWindowInDays: 7 }, 'Rejected.PendingDeletion'],
    ] as const) {
      const keyId = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, EnableAutomaticRotation: true, RotationInterval: '7d' })).KeyMetadata.KeyId as string;
      await call(pause, { KeyId: keyId, ...params });
      const before = await describeKey(keyId);
      expect(await outcome('CreateKeyVersion', { KeyId: keyId })).toBe(code);
      expect(await outcome('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: true, RotationInterval: '30d' })).toBe(code);
      expect(await outcome('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: false })).toBe(code);
      expect(await describeKey(keyId)).toEqual(before);
      expect(await versionCount(keyId)).toBe(1);
    }
  });

  it('an unknown key is Forbidden.KeyNotFound', async () => {
    expect(await outcome('CreateKeyVersion', { KeyId: 'key-doesnotexist0000000000' })).toBe('Forbidden.KeyNotFound');
    expect(await outcome('UpdateRotationPolicy', { KeyId: 'key-doesnotexist0000000000', EnableAutomaticRotation: false })).toBe('Forbidden.KeyNotFound');
  });
});
