import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyId } from '../helpers/fixtures.js';
import { KMS, type CallApi, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 3, key lifecycle through the real SDKs: ListKeys, EnableKey, DisableKey,
 * ScheduleKeyDeletion, CancelKeyDeletion, SetDeletionProtection, UpdateKeyDescription,
 * ListKeyVersions, DescribeKeyVersion — and concurrent transitions that never interleave.
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

const describe_ = async (keyId: string) => (await call('DescribeKey', { KeyId: keyId })).KeyMetadata as Record<string, string>;
const settle = <T>(promises: Array<Promise<T>>) =>
  Promise.all(promises.map((p) => p.then(() => 'ok', (e: { data?: { Code?: string } }) => e.data?.Code ?? 'thrown')));

describe('@alicloud/kms20160120@1.2.0', () => {
  it('lists keys in their wrapper, page by page', async () => {
    const client = legacyClient(server.endpoint, server.admin);
    const ids = [await createKeyId(call), await createKeyId(call), await createKeyId(call)];
    const first = await client.listKeys(new KMS.ListKeysRequest({ pageNumber: 1, pageSize: 2 }));
    expect(first.pageNumber).toBe(1);
    expect(first.pageSize).toBe(2);
    expect(first.totalCount).toBeGreaterThanOrEqual(3);
    expect(first.keys.key).toHaveLength(2);
    const firstKey = first.keys.key[0]!;
    expect(firstKey.keyArn).toBe(`acs:kms:${server.config.region}:${server.config.accountId}:key/${firstKey.keyId}`);
    const all: string[] = [];
    for (let page = 1; page <= Math.ceil(first.totalCount / 2); page++) {
      const r = await client.listKeys(new KMS.ListKeysRequest({ pageNumber: page, pageSize: 2 }));
      all.push(...r.keys.key.map((k: { keyId: string }) => k.keyId));
    }
    expect(all).toEqual(expect.arrayContaining(ids));
    expect(new Set(all).size).toBe(first.totalCount);
  });

  it('disables, enables, schedules and cancels deletion, updates the description', async () => {
    const client = legacyClient(server.endpoint, server.admin);
    const keyId = await createKeyId(call);
    await client.disableKey(new KMS.DisableKeyRequest({ keyId }));
    expect((await describe_(keyId)).KeyState).toBe('Disabled');
    await client.enableKey(new KMS.EnableKeyRequest({ keyId }));
    expect((await describe_(keyId)).KeyState).toBe('Enabled');

    const before = Date.now();
    await client.scheduleKeyDeletion(new KMS.ScheduleKeyDeletionRequest({ keyId, pendingWindowInDays: 7 }));
    const pending = await describe_(keyId);
    expect(pending.KeyState).toBe('PendingDeletion');
    const deleteDate = Date.parse(pending.DeleteDate ?? '');
    expect(deleteDate).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 7 * 86_400_000);
    expect(deleteDate).toBeLessThanOrEqual(Date.now() + 7 * 86_400_000);

    await client.cancelKeyDeletion(new KMS.CancelKeyDeletionRequest({ keyId }));
    const cancelled = await describe_(keyId);
    expect(cancelled.KeyState).toBe('Enabled');
    expect(cancelled.DeleteDate).toBeUndefined();

    await client.updateKeyDescription(new KMS.UpdateKeyDescriptionRequest({ keyId, description: 'new words' }));
    expect((await describe_(keyId)).Description).toBe('new words');
    await client.updateKeyDescription(new KMS.UpdateKeyDescriptionRequest({ keyId, description: '' }));
    expect((await describe_(keyId)).Description).toBe('');
  });

  it('lists and describes key versions in their wrapper', async () => {
    const client = legacyClient(server.endpoint, server.admin);
    const keyId = await createKeyId(call, { DKMSInstanceId: server.hsmInstanceId });
    const listed = await client.listKeyVersions(new KMS.ListKeyVersionsRequest({ keyId }));
    expect(listed.totalCount).toBe(1);
    const version = listed.keyVersions.keyVersion[0]!;
    expect(version.keyId).toBe(keyId);
    expect(version.keyVersionId).toBe((await describe_(keyId)).PrimaryKeyVersion);
    expect(version.creationDate).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const described = await client.describeKeyVersion(new KMS.DescribeKeyVersionRequest({ keyId, keyVersionId: version.keyVersionId }));
    expect(described.keyVersion).toEqual({ keyId, keyVersionId: version.keyVersionId, creationDate: version.creationDate });

    const other = await createKeyId(call);
    const wrongKey = await sdkError(() => client.describeKeyVersion(new KMS.DescribeKeyVersionRequest({ keyId: other, keyVersionId: version.keyVersionId })));
    expect(wrongKey.code).toBe('Forbidden.KeyNotFound');
    const malformed = await sdkError(() => client.describeKeyVersion(new KMS.DescribeKeyVersionRequest({ keyId, keyVersionId: 'key-123-20v29b' })));
    expect(malformed.code).toBe('Forbidden.KeyNotFound');
    expect(malformed.data.HttpStatus).toBe(404);
  });
});

describe('ListKeys filters (callApi)', () => {
  it('filters by KeyState, ProtectionLevel, KeySpec and DKMSInstanceId, and counts what it filters', async () => {
    const disabled = await createKeyId(call, { DKMSInstanceId: server.softwareInstanceId });
    await call('DisableKey', { KeyId: disabled });
    const hsm128 = await createKeyId(call, { DKMSInstanceId: server.hsmInstanceId, KeySpec: 'Aliyun_AES_128' });
    const pendingImport = await createKeyId(call, { Origin: 'EXTERNAL' });

    const ids = async (filters: unknown, extra: Record<string, unknown> = {}) => {
      const r = await call('ListKeys', { Filters: JSON.stringify(filters), PageSize: 100, ...extra });
      expect(r.TotalCount).toBe(r.Keys.Key.length);
      return (r.Keys.Key as Array<{ KeyId: string }>).map((k) => k.KeyId);
    };
    const onlyDisabled = await ids([{ Key: 'KeyState', Values: ['Disabled'] }]);
    expect(onlyDisabled).toContain(disabled);
    expect(onlyDisabled).not.toContain(hsm128);
    expect(await ids([{ Key: 'KeyState', Values: ['PendingImport'] }])).toEqual([pendingImport]);
    expect(await ids([{ Key: 'KeySpec', Values: ['Aliyun_AES_128'] }])).toEqual([hsm128]);
    const hsm = await ids([{ Key: 'ProtectionLevel', Values: ['HSM'] }]);
    expect(hsm).toContain(hsm128);
    expect(hsm).not.toContain(disabled);
    expect(await ids([
      { Key: 'DKMSInstanceId', Values: [server.softwareInstanceId] },
      { Key: 'KeyState', Values: ['Disabled', 'PendingDeletion'] },
    ])).toEqual([disabled]);
    expect(await ids([{ Key: 'CreatorType', Values: ['Service'] }])).toEqual([]);
    expect(await ids([{ Key: 'KeySpec', Values: ['RSA_2048'] }])).toEqual([]);
  });

  it('answers a page past the end with an empty wrapper', async () => {
    const r = await call('ListKeys', { PageNumber: 1000, PageSize: 100 });
    expect(r.Keys).toEqual({ Key: [] });
    expect(r.PageNumber).toBe(1000);
  });
});

describe('deletion protection (callApi; SetDeletionProtection is not in 1.2.0)', () => {
  it('blocks ScheduleKeyDeletion with Forbidden.DeletionProtection (403) until it is turned off', async () => {
    const keyId = await createKeyId(call);
    const arn = (await describe_(keyId)).Arn!;
    await call('SetDeletionProtection', { ProtectedResourceArn: arn, EnableDeletionProtection: true, DeletionProtectionDescription: 'used by billing' });
    const protectedKey = await describe_(keyId);
    expect(protectedKey.DeletionProtection).toBe('Enabled');
    expect(protectedKey.DeletionProtectionDescription).toBe('used by billing');

    const refused = await sdkError(() => call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 }));
    expect(refused.code).toBe('Forbidden.DeletionProtection');
    expect(refused.statusCode).toBe(403);
    expect((await describe_(keyId)).KeyState).toBe('Enabled');

    await call('SetDeletionProtection', { KeyId: keyId, EnableDeletionProtection: false });
    const unprotected = await describe_(keyId);
    expect(unprotected.DeletionProtection).toBe('Disabled');
    expect(unprotected.DeletionProtectionDescription).toBe('');
    await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 366 });
    expect((await describe_(keyId)).KeyState).toBe('PendingDeletion');

    const whilePending = await sdkError(() => call('SetDeletionProtection', { KeyId: keyId, EnableDeletionProtection: true }));
    expect(whilePending.code).toBe('Rejected.PendingDeletion');
    expect(whilePending.statusCode).toBe(409);
  });

  it('names the key by KeyId, ARN or both (which must agree), and needs one of them', async () => {
    const a = await createKeyId(call);
    const b = await createKeyId(call);
    const arnOfB = (await describe_(b)).Arn!;
    const mismatch = await sdkError(() => call('SetDeletionProtection', { KeyId: a, ProtectedResourceArn: arnOfB, EnableDeletionProtection: true }));
    expect(mismatch.code).toBe('InvalidParameter');
    const neither = await sdkError(() => call('SetDeletionProtection', { EnableDeletionProtection: true }));
    expect(neither.code).toBe('MissingParameter');
    const notAKeyArn = await sdkError(() => call('SetDeletionProtection', { ProtectedResourceArn: 'alias/x', EnableDeletionProtection: true }));
    expect(notAKeyArn.code).toBe('InvalidParameter');
    const otherRegion = await sdkError(() =>
      call('SetDeletionProtection', { ProtectedResourceArn: arnOfB.replace(`:${server.config.region}:`, ':eu-central-1:'), EnableDeletionProtection: true }),
    );
    expect(otherRegion.code).toBe('Forbidden.KeyNotFound');
    expect((await describe_(a)).DeletionProtection).toBe('Disabled');
  });
});

describe('transitions the key policy decides', () => {
  it('CancelKeyDeletion returns a BYOK key without material to PendingImport, not Enabled', async () => {
    const keyId = await createKeyId(call, { Origin: 'EXTERNAL' });
    expect((await describe_(keyId)).KeyState).toBe('PendingImport');
    await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 30 });
    expect((await describe_(keyId)).KeyState).toBe('PendingDeletion');
    await call('CancelKeyDeletion', { KeyId: keyId });
    expect((await describe_(keyId)).KeyState).toBe('PendingImport');
  });

  it('suspends automatic rotation while a key is not Enabled and resumes it after (§5.4)', async () => {
    const keyId = await createKeyId(call, { DKMSInstanceId: server.softwareInstanceId, EnableAutomaticRotation: true, RotationInterval: '30d' });
    expect((await describe_(keyId)).AutomaticRotation).toBe('Enabled');
    await call('DisableKey', { KeyId: keyId });
    const disabled = await describe_(keyId);
    expect(disabled.AutomaticRotation).toBe('Suspended');
    expect(disabled.RotationInterval).toBe('2592000s');
    await call('EnableKey', { KeyId: keyId });
    expect((await describe_(keyId)).AutomaticRotation).toBe('Enabled');
    await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
    expect((await describe_(keyId)).AutomaticRotation).toBe('Suspended');
    await call('CancelKeyDeletion', { KeyId: keyId });
    expect((await describe_(keyId)).AutomaticRotation).toBe('Enabled');
  });

  it('accepts the key by alias and by ARN', async () => {
    const keyId = await createKeyId(call);
    await call('CreateAlias', { AliasName: 'alias/lifecycle-by-alias', KeyId: keyId });
    await call('DisableKey', { KeyId: 'alias/lifecycle-by-alias' });
    expect((await describe_(keyId)).KeyState).toBe('Disabled');
    const arn = (await describe_(keyId)).Arn!;
    await call('EnableKey', { KeyId: arn });
    expect((await describe_(keyId)).KeyState).toBe('Enabled');
    const aliasArn = `acs:kms:${server.config.region}:${server.config.accountId}:alias/lifecycle-by-alias`;
    await call('UpdateKeyDescription', { KeyId: aliasArn, Description: 'via alias ARN' });
    expect((await describe_(keyId)).Description).toBe('via alias ARN');
    const versions = await call('ListKeyVersions', { KeyId: 'alias/lifecycle-by-alias' });
    expect(versions.KeyVersions.KeyVersion[0].KeyId).toBe(keyId);
  });
});

describe('concurrent transitions never interleave', () => {
  it('ten parallel ScheduleKeyDeletion: one succeeds, nine get Rejected.StateModifiedFailed (409)', async () => {
    const keyId = await createKeyId(call);
    const results = await settle(Array.from({ length: 10 }, () => call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 })));
    expect(results.filter((r) => r === 'ok')).toHaveLength(1);
    expect(results.filter((r) => r === 'Rejected.StateModifiedFailed')).toHaveLength(9);
    expect((await describe_(keyId)).KeyState).toBe('PendingDeletion');
    // The refusals are audited too (batched, with the key): count the transition that happened.
    const { rows } = await server.kms.deps.db.query("SELECT count(*)::int AS n FROM audit_events WHERE key_id = $1 AND action = 'ScheduleKeyDeletion' AND result_code = 'OK'", [keyId]);
    expect(rows[0].n).toBe(1);
  });

  it('SetDeletionProtection racing ScheduleKeyDeletion: never a protected key pending deletion', async () => {
    for (let round = 0; round < 8; round++) {
      const keyId = await createKeyId(call);
      const [protect, schedule] = await settle([
        call('SetDeletionProtection', { KeyId: keyId, EnableDeletionProtection: true }),
        call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 }),
      ]);
      const key = await describe_(keyId);
      expect(key.KeyState === 'PendingDeletion' && key.DeletionProtection === 'Enabled').toBe(false);
      // Whichever ran second was judged on what the first left behind.
      if (schedule === 'ok') expect(protect).toBe('Rejected.PendingDeletion');
      else expect([schedule, protect]).toEqual(['Forbidden.DeletionProtection', 'ok']);
    }
  });

  it('a burst of mixed Enable/Disable/Schedule/Cancel leaves the audit trail and the final state consistent', async () => {
    const keyId = await createKeyId(call);
    const actions = ['DisableKey', 'EnableKey', 'ScheduleKeyDeletion', 'CancelKeyDeletion'];
    const calls = Array.from({ length: 24 }, (_, i) => {
      const action = actions[i % actions.length]!;
      return call(action, action === 'ScheduleKeyDeletion' ? { KeyId: keyId, PendingWindowInDays: 7 } : { KeyId: keyId });
    });
    const results = await settle(calls);
    expect(results.every((r) => r === 'ok' || r === 'Rejected.StateModifiedFailed')).toBe(true);
    // Replaying the successful transitions in commit order must end where the key is.
    const { rows } = await server.kms.deps.db.query<{ detail: { from: string; to: string } }>(
      // One key's events share a chain, whose seq order is their commit order; the refused
      // calls are there too (batched, with the key), so only the transitions that happened.
      "SELECT detail::jsonb AS detail FROM audit_events WHERE key_id = $1 AND action = ANY($2) AND result_code = 'OK' ORDER BY chain_id, seq",
      [keyId, actions],
    );
    expect(rows).toHaveLength(results.filter((r) => r === 'ok').length);
    let state = 'Enabled';
    for (const { detail } of rows) {
      expect(detail.from).toBe(state);
      state = detail.to;
    }
    expect((await describe_(keyId)).KeyState).toBe(state);
  });
});
