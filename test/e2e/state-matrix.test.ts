import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 3, through the real SDK (callApi, ACS3): every (key state × action) pair gets the
 * documented answer (alibaba-api.md §5.1), and every validation rule its documented code —
 * never a 500. Each pair runs on a fresh key, so one pair's transition cannot leak into another.
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

type State = 'Enabled' | 'Disabled' | 'PendingDeletion' | 'PendingImport';
const STATES: readonly State[] = ['Enabled', 'Disabled', 'PendingDeletion', 'PendingImport'];

interface Fixture {
  keyId: string;
  versionId: string;
  /** A blob naming the key's version: real for keys that once were Enabled, shaped right for PendingImport. */
  ciphertext: string;
  /** An alias bound to this key, and one bound to another (Enabled) key. */
  ownAlias: string;
  otherAlias: string;
}

let serial = 0;

/** A key in `state`, reached the way a user would: DisableKey, ScheduleKeyDeletion, Origin=EXTERNAL. */
async function keyIn(state: State): Promise<Fixture> {
  const n = ++serial;
  const created = (await call('CreateKey', state === 'PendingImport' ? { Origin: 'EXTERNAL' } : {})).KeyMetadata;
  const keyId = created.KeyId as string;
  const versionId = created.PrimaryKeyVersion as string;
  let ciphertext: string;
  if (state === 'PendingImport') {
    ciphertext = Buffer.concat([Buffer.from(versionId, 'ascii'), Buffer.alloc(12, 1), Buffer.from('opaque'), Buffer.alloc(16, 2)]).toString('base64');
  } else {
    ciphertext = (await call('Encrypt', { KeyId: keyId, Plaintext: 'matrix' })).CiphertextBlob as string;
  }
  const other = (await call('CreateKey', {})).KeyMetadata.KeyId as string;
  const ownAlias = `alias/matrix/own-${n}`;
  const otherAlias = `alias/matrix/other-${n}`;
  await call('CreateAlias', { AliasName: ownAlias, KeyId: keyId });
  await call('CreateAlias', { AliasName: otherAlias, KeyId: other });
  await call('TagResource', { KeyId: keyId, Tags: JSON.stringify([{ TagKey: 'old', TagValue: 'tag' }]) });
  if (state === 'Disabled') await call('DisableKey', { KeyId: keyId });
  if (state === 'PendingDeletion') await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
  expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe(state);
  return { keyId, versionId, ciphertext, ownAlias, otherAlias };
}

const OK = 'Success';
const D = 'Rejected.Disabled';
const PD = 'Rejected.PendingDeletion';
const PI = 'Rejected.PendingImport';
const SMF = 'Rejected.StateModifiedFailed';
type Row = readonly [enabled: string, disabled: string, pendingDeletion: string, pendingImport: string];

/** alibaba-api.md §5.1 (rows it did not capture follow domain/key.ts, marked there as our choice). */
const MATRIX: ReadonlyArray<[action: string, query: (f: Fixture) => Record<string, unknown>, expected: Row]> = [
  ['Encrypt', (f) => ({ KeyId: f.keyId, Plaintext: 'x' }), [OK, D, PD, PI]],
  ['Decrypt', (f) => ({ CiphertextBlob: f.ciphertext }), [OK, D, PD, PI]],
  ['GenerateDataKey', (f) => ({ KeyId: f.keyId }), [OK, D, PD, PI]],
  ['GenerateDataKeyWithoutPlaintext', (f) => ({ KeyId: f.keyId, NumberOfBytes: 16 }), [OK, D, PD, PI]],
  // The source side of ReEncrypt (the destination, an Enabled key, is reached by alias).
  ['ReEncrypt', (f) => ({ CiphertextBlob: f.ciphertext, DestinationKeyId: f.otherAlias }), [OK, D, PD, PI]],
  ['UpdateKeyDescription', (f) => ({ KeyId: f.keyId, Description: 'd' }), [OK, OK, PD, OK]],
  ['SetDeletionProtection', (f) => ({ KeyId: f.keyId, EnableDeletionProtection: true }), [OK, OK, PD, OK]],
  ['TagResource', (f) => ({ KeyId: f.keyId, Tags: JSON.stringify([{ TagKey: 'k', TagValue: 'v' }]) }), [OK, OK, PD, OK]],
  ['UntagResource', (f) => ({ KeyId: f.keyId, TagKeys: JSON.stringify(['old']) }), [OK, OK, PD, OK]],
  ['TagResources', (f) => ({ ResourceType: 'key', ResourceId: [f.keyId], Tag: [{ Key: 'k', Value: 'v' }] }), [OK, OK, PD, OK]],
  ['UntagResources', (f) => ({ ResourceType: 'key', ResourceId: [f.keyId], TagKey: ['old'] }), [OK, OK, PD, OK]],
  ['EnableKey', (f) => ({ KeyId: f.keyId }), [OK, OK, SMF, SMF]],
  ['DisableKey', (f) => ({ KeyId: f.keyId }), [OK, OK, SMF, SMF]],
  ['ScheduleKeyDeletion', (f) => ({ KeyId: f.keyId, PendingWindowInDays: 30 }), [OK, OK, SMF, OK]],
  ['CancelKeyDeletion', (f) => ({ KeyId: f.keyId }), [SMF, SMF, OK, SMF]],
  ['CreateAlias', (f) => ({ AliasName: `${f.ownAlias}-new`, KeyId: f.keyId }), [OK, OK, SMF, OK]],
  // "Special": only the target's state decides (the alias is bound to another, Enabled key).
  ['UpdateAlias', (f) => ({ AliasName: f.otherAlias, KeyId: f.keyId }), [OK, OK, SMF, OK]],
  ['DeleteAlias', (f) => ({ AliasName: f.ownAlias }), [OK, OK, OK, OK]],
  ['DescribeKey', (f) => ({ KeyId: f.keyId }), [OK, OK, OK, OK]],
  ['ListKeyVersions', (f) => ({ KeyId: f.keyId }), [OK, OK, OK, OK]],
  ['DescribeKeyVersion', (f) => ({ KeyId: f.keyId, KeyVersionId: f.versionId }), [OK, OK, OK, OK]],
  ['ListResourceTags', (f) => ({ KeyId: f.keyId }), [OK, OK, OK, OK]],
  ['ListAliasesByKeyId', (f) => ({ KeyId: f.keyId }), [OK, OK, OK, OK]],
  ['ListTagResources', (f) => ({ ResourceType: 'key', ResourceId: [f.keyId] }), [OK, OK, OK, OK]],
];

/** Where a successful transition leaves the key (anything else keeps its state). */
const AFTER: Readonly<Record<string, State>> = {
  EnableKey: 'Enabled',
  DisableKey: 'Disabled',
  ScheduleKeyDeletion: 'PendingDeletion',
  CancelKeyDeletion: 'Enabled',
};

describe('every key state × action, through the SDK (§5.1)', () => {
  const pairs = MATRIX.flatMap(([action, query, row]) => STATES.map((state, i) => [action, state, row[i]!, query] as const));

  it.each(pairs)('%s on a %s key → %s', async (action, state, expected, query) => {
    const fixture = await keyIn(state);
    let outcome = OK;
    let status = 200;
    try {
      await call(action, query(fixture));
    } catch (error) {
      const e = error as { data?: { Code?: string }; statusCode?: number };
      outcome = e.data?.Code ?? String(error);
      status = e.statusCode ?? 0;
    }
    expect(outcome).toBe(expected);
    expect(status).toBe(expected === OK ? 200 : 409);
    const after = (await call('DescribeKey', { KeyId: fixture.keyId })).KeyMetadata.KeyState;
    expect(after).toBe(expected === OK ? (AFTER[action] ?? state) : state);
  });

  it('deletion protection blocks ScheduleKeyDeletion in Enabled, Disabled and PendingImport', async () => {
    for (const state of ['Enabled', 'Disabled', 'PendingImport'] as const) {
      const { keyId } = await keyIn(state);
      await call('SetDeletionProtection', { KeyId: keyId, EnableDeletionProtection: true });
      const error = await sdkError(() => call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 }));
      expect([state, error.code, error.statusCode]).toEqual([state, 'Forbidden.DeletionProtection', 403]);
      expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe(state);
    }
  });
});

describe('every validation rule answers its documented code, never a 500', () => {
  const tags = (n: number, key = (i: number) => `k${i}`) => JSON.stringify(Array.from({ length: n }, (_, i) => ({ TagKey: key(i), TagValue: 'v' })));
  const INVALID = ['InvalidParameter', 400] as const;
  const MISSING = ['MissingParameter', 400] as const;

  const cases: ReadonlyArray<[name: string, action: string, query: Record<string, unknown> | (() => Promise<Record<string, unknown>>), expected: readonly [string, number]]> = [
    // CreateKey
    ['unknown KeySpec', 'CreateKey', { KeySpec: 'Aliyun_AES_512' }, INVALID],
    ['KeySpec the tier lacks (SOFTWARE AES-128)', 'CreateKey', { KeySpec: 'Aliyun_AES_128' }, INVALID],
    ['unknown Origin', 'CreateKey', { Origin: 'Foo' }, INVALID],
    ['Origin in the wrong case', 'CreateKey', { Origin: 'external' }, INVALID],
    ['unknown KeyUsage', 'CreateKey', { KeyUsage: 'WRAP/UNWRAP' }, INVALID],
    ['SIGN/VERIFY on a symmetric spec', 'CreateKey', { KeyUsage: 'SIGN/VERIFY' }, INVALID],
    ['unknown ProtectionLevel', 'CreateKey', { ProtectionLevel: 'TPM' }, INVALID],
    ['HSM default key', 'CreateKey', { ProtectionLevel: 'HSM' }, INVALID],
    ['RotationInterval under 7 days', 'CreateKey', { EnableAutomaticRotation: true, RotationInterval: '6d' }, INVALID],
    ['RotationInterval over 365 days', 'CreateKey', { EnableAutomaticRotation: true, RotationInterval: '366d' }, INVALID],
    ['RotationInterval without a unit', 'CreateKey', { EnableAutomaticRotation: true, RotationInterval: '604800' }, INVALID],
    ['RotationInterval garbage', 'CreateKey', { EnableAutomaticRotation: true, RotationInterval: 'weekly' }, INVALID],
    // A default key takes its fixed 365 days without one; an instance key needs one.
    ['rotation without an interval', 'CreateKey', async () => ({ DKMSInstanceId: server.softwareInstanceId, EnableAutomaticRotation: true }), INVALID],
    ['default key with a period other than 365 days', 'CreateKey', { EnableAutomaticRotation: true, RotationInterval: '30d' }, INVALID],
    // Who may rotate (domain/key.ts): BYOK keys never rotate automatically.
    [
      'rotation of an EXTERNAL key',
      'CreateKey',
      async () => ({ DKMSInstanceId: server.softwareInstanceId, Origin: 'EXTERNAL', EnableAutomaticRotation: true, RotationInterval: '7d' }),
      ['Rejected.UnsupportedOperation', 400],
    ],
    ['boolean that is not one', 'CreateKey', { EnableAutomaticRotation: 'yes' }, INVALID],
    ['21 tags', 'CreateKey', { Tags: tags(21) }, INVALID],
    ['acs: tag key', 'CreateKey', { Tags: tags(1, () => 'acs:project') }, INVALID],
    ['aliyun tag key', 'CreateKey', { Tags: tags(1, () => 'aliyun-x') }, INVALID],
    ['Tags not JSON', 'CreateKey', { Tags: 'k=v' }, INVALID],
    ['unknown instance', 'CreateKey', { DKMSInstanceId: 'kst-hzzdoesnotexist' }, ['Forbidden.DKMSInstanceNotFound', 403]],
    // Aliases
    ['alias without prefix', 'CreateAlias', async () => ({ AliasName: 'orders', KeyId: await anyKey() }), INVALID],
    ['alias with a space', 'CreateAlias', async () => ({ AliasName: 'alias/my key', KeyId: await anyKey() }), INVALID],
    ['reserved alias/acs…', 'CreateAlias', async () => ({ AliasName: 'alias/acs/ecs', KeyId: await anyKey() }), INVALID],
    ['alias of 256 characters', 'CreateAlias', async () => ({ AliasName: `alias/${'a'.repeat(250)}`, KeyId: await anyKey() }), INVALID],
    ['alias without a key', 'CreateAlias', { AliasName: 'alias/lonely' }, MISSING],
    ['unknown alias', 'DeleteAlias', { AliasName: 'alias/nobody-home' }, ['Forbidden.AliasNotFound', 404]],
    // Keys by reference
    ['missing KeyId', 'DescribeKey', {}, MISSING],
    ['malformed ARN', 'DescribeKey', { KeyId: 'acs:kms:cn-hangzhou' }, INVALID],
    ['unknown key', 'DescribeKey', { KeyId: 'key-hzz000000000000000000000' }, ['Forbidden.KeyNotFound', 404]],
    ['unknown version', 'DescribeKeyVersion', async () => ({ KeyId: await anyKey(), KeyVersionId: '00000000-0000-4000-8000-000000000000' }), ['Forbidden.KeyNotFound', 404]],
    // Paging and filters
    ['PageSize 0', 'ListKeys', { PageSize: 0 }, INVALID],
    ['PageSize 101', 'ListKeys', { PageSize: 101 }, INVALID],
    ['PageSize not a number', 'ListKeys', { PageSize: 'ten' }, INVALID],
    ['PageNumber 0', 'ListKeys', { PageNumber: 0 }, INVALID],
    ['Filters not JSON', 'ListKeys', { Filters: 'KeyState=Enabled' }, INVALID],
    ['unknown filter key', 'ListKeys', { Filters: JSON.stringify([{ Key: 'Color', Values: ['red'] }]) }, INVALID],
    ['unknown filter value', 'ListKeys', { Filters: JSON.stringify([{ Key: 'KeyState', Values: ['enabled'] }]) }, INVALID],
    ['filter without values', 'ListKeys', { Filters: JSON.stringify([{ Key: 'KeyState', Values: [] }]) }, INVALID],
    ['ListAliases PageSize 101', 'ListAliases', { PageSize: 101 }, INVALID],
    ['ListKeyVersions PageSize 0', 'ListKeyVersions', async () => ({ KeyId: await anyKey(), PageSize: 0 }), INVALID],
    // Lifecycle parameters
    ['PendingWindowInDays 6', 'ScheduleKeyDeletion', async () => ({ KeyId: await anyKey(), PendingWindowInDays: 6 }), INVALID],
    ['PendingWindowInDays 367', 'ScheduleKeyDeletion', async () => ({ KeyId: await anyKey(), PendingWindowInDays: 367 }), INVALID],
    ['PendingWindowInDays missing', 'ScheduleKeyDeletion', async () => ({ KeyId: await anyKey() }), MISSING],
    ['EnableDeletionProtection missing', 'SetDeletionProtection', async () => ({ KeyId: await anyKey() }), MISSING],
    ['EnableDeletionProtection not a boolean', 'SetDeletionProtection', async () => ({ KeyId: await anyKey(), EnableDeletionProtection: 'on' }), INVALID],
    ['Description missing', 'UpdateKeyDescription', async () => ({ KeyId: await anyKey() }), MISSING],
    // Tags
    ['TagKeys not JSON', 'UntagResource', async () => ({ KeyId: await anyKey(), TagKeys: 'old' }), INVALID],
    ['tag value of 129 characters', 'TagResource', async () => ({ KeyId: await anyKey(), Tags: JSON.stringify([{ TagKey: 'k', TagValue: 'v'.repeat(129) }]) }), INVALID],
    // Instances
    ['unknown quota ResourceType', 'GetKmsInstanceQuotaInfos', { KmsInstanceId: 'kst-x', ResourceType: 'disk' }, INVALID],
    ['unknown action', 'DestroyEverything', {}, ['InvalidAction.NotFound', 404]],
  ];

  let sharedKey: string | undefined;
  async function anyKey(): Promise<string> {
    sharedKey ??= (await call('CreateKey', {})).KeyMetadata.KeyId as string;
    return sharedKey;
  }

  it.each(cases)('%s (%s) → %j', async (_name, action, query, [code, status]) => {
    const params = typeof query === 'function' ? await query() : query;
    const logStart = server.logs.length;
    const error = await sdkError(() => call(action, params));
    expect([error.code, error.statusCode]).toEqual([code, status]);
    expect(error.data.Message).toBeTruthy();
    // Each case checks its own log lines (a check over the whole log after the cases would pass
    // with none of them run): the refusal is logged as one, never as an internal failure.
    const logged = server.logs.slice(logStart).join('\n');
    expect(logged).toContain('"msg":"rpc refused"');
    expect(logged).not.toContain('internal failure');
  });
});
