import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allActions } from '../../src/api/actions/index.js';
import { createAccessKey } from '../../src/services/access.js';
import { systemCaller } from '../../src/services/context.js';
import { KMS, type CallApi, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type Credentials, type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 3, authorization: `admin` access keys may do everything; `key-user` ones only crypto
 * and reads, optionally limited to some instances. A refused action is Forbidden.NoPermission
 * (403); a key or instance outside a limited key-user's instances is answered as missing (404).
 */
let server: TestServer;
let admin: CallApi;
let limitedKeys: Credentials;
let limited: CallApi;
let unlimited: CallApi;
/** Instance A is the HSM instance, B the SOFTWARE one; D is a default key. */
let keyA: string;
let keyB: string;
let keyD: string;

beforeAll(async () => {
  server = await startServer();
  admin = openApiClient(server.endpoint, server.admin);
  const created = async (query: Record<string, unknown>) => (await admin('CreateKey', query)).KeyMetadata.KeyId as string;
  keyA = await created({ DKMSInstanceId: server.hsmInstanceId });
  keyB = await created({ DKMSInstanceId: server.softwareInstanceId });
  keyD = await created({});
  await admin('CreateAlias', { AliasName: 'alias/a', KeyId: keyA });
  await admin('CreateAlias', { AliasName: 'alias/b', KeyId: keyB });
  await admin('TagResource', { KeyId: keyA, Tags: JSON.stringify([{ TagKey: 'team', TagValue: 'a' }]) });
  await admin('TagResource', { KeyId: keyB, Tags: JSON.stringify([{ TagKey: 'team', TagValue: 'b' }]) });
  const limitedKey = await createAccessKey(server.kms.deps, { role: 'key-user', instanceIds: [server.hsmInstanceId] }, systemCaller);
  limitedKeys = limitedKey;
  limited = openApiClient(server.endpoint, limitedKey);
  unlimited = openApiClient(server.endpoint, await createAccessKey(server.kms.deps, { role: 'key-user' }, systemCaller));
});

afterAll(async () => {
  await server?.stop();
});

const forbidden = async (fn: () => Promise<unknown>) => {
  const e = await sdkError(fn);
  return `${e.code} ${e.statusCode ?? e.data?.HttpStatus}`;
};
const NO = 'Forbidden.NoPermission 403';

/** Every state-changing action of issue 3, with parameters that would otherwise succeed on key A. */
const managementCalls = (): Array<[string, Record<string, unknown>]> => [
  ['CreateKey', { DKMSInstanceId: server.hsmInstanceId }],
  ['EnableKey', { KeyId: keyA }],
  ['DisableKey', { KeyId: keyA }],
  ['ScheduleKeyDeletion', { KeyId: keyA, PendingWindowInDays: 7 }],
  ['CancelKeyDeletion', { KeyId: keyA }],
  ['SetDeletionProtection', { KeyId: keyA, EnableDeletionProtection: true }],
  ['UpdateKeyDescription', { KeyId: keyA, Description: 'x' }],
  ['CreateAlias', { AliasName: 'alias/by-key-user', KeyId: keyA }],
  ['UpdateAlias', { AliasName: 'alias/a', KeyId: keyA }],
  ['DeleteAlias', { AliasName: 'alias/a' }],
  ['TagResource', { KeyId: keyA, Tags: JSON.stringify([{ TagKey: 'x', TagValue: 'y' }]) }],
  ['UntagResource', { KeyId: keyA, TagKeys: JSON.stringify(['team']) }],
  ['TagResources', { ResourceType: 'key', ResourceId: [keyA], Tag: [{ Key: 'x', Value: 'y' }] }],
  ['UntagResources', { ResourceType: 'key', ResourceId: [keyA], All: true }],
];

describe('the access table', () => {
  it('every state-changing action of issue 3 is admin-only; reads and crypto are open to key-users', () => {
    for (const [action] of managementCalls()) expect([action, allActions[action]?.access]).toEqual([action, 'admin']);
    for (const action of ['DescribeKey', 'ListKeys', 'ListKeyVersions', 'DescribeKeyVersion', 'ListAliases', 'ListAliasesByKeyId', 'ListResourceTags', 'ListTagResources', 'GetKmsInstanceQuotaInfos', 'GetDefaultKmsInstance']) {
      expect([action, allActions[action]?.access]).toEqual([action, 'read']);
    }
    for (const action of ['Encrypt', 'Decrypt']) expect([action, allActions[action]?.access]).toEqual([action, 'use']);
  });
});

describe('a key-user limited to instance A', () => {
  it('encrypts, decrypts and describes keys of A (by id and by alias)', async () => {
    const encrypted = await limited('Encrypt', { KeyId: keyA, Plaintext: 'for A' });
    expect((await limited('Decrypt', { CiphertextBlob: encrypted.CiphertextBlob })).Plaintext).toBe('for A');
    expect((await limited('DescribeKey', { KeyId: 'alias/a' })).KeyMetadata.KeyId).toBe(keyA);
    expect((await limited('ListKeyVersions', { KeyId: keyA })).TotalCount).toBe(1);
    expect((await limited('ListResourceTags', { KeyId: keyA })).Tags.Tag).toEqual([{ KeyId: keyA, TagKey: 'team', TagValue: 'a' }]);
  });

  it('gets the answers of missing keys for keys of instance B and default keys', async () => {
    const notFound = 'Forbidden.KeyNotFound 404';
    const ofB = await admin('Encrypt', { KeyId: keyB, Plaintext: 'for B' });
    expect(await forbidden(() => limited('Encrypt', { KeyId: keyB, Plaintext: 'x' }))).toBe(notFound);
    expect(await forbidden(() => limited('Decrypt', { CiphertextBlob: ofB.CiphertextBlob }))).toBe(notFound);
    expect(await forbidden(() => limited('DescribeKey', { KeyId: keyB }))).toBe(notFound);
    expect(await forbidden(() => limited('DescribeKey', { KeyId: 'alias/b' }))).toBe('Forbidden.AliasNotFound 404');
    expect(await forbidden(() => limited('DescribeKey', { KeyId: keyD }))).toBe(notFound);
    expect(await forbidden(() => limited('Encrypt', { KeyId: keyD, Plaintext: 'x' }))).toBe(notFound);
    expect(await forbidden(() => limited('ListAliasesByKeyId', { KeyId: keyB }))).toBe(notFound);
  });

  it('sees only the keys, aliases and tags of A in lists', async () => {
    const keys = (await limited('ListKeys', { PageSize: 100 })).Keys.Key as Array<{ KeyId: string }>;
    expect(keys.map((k) => k.KeyId)).toEqual([keyA]);
    const onlyB = await limited('ListKeys', { Filters: JSON.stringify([{ Key: 'DKMSInstanceId', Values: [server.softwareInstanceId] }]) });
    expect([onlyB.TotalCount, onlyB.Keys.Key]).toEqual([0, []]);
    const aliases = await limited('ListAliases', {});
    expect((aliases.Aliases.Alias as Array<{ AliasName: string }>).map((a) => a.AliasName)).toEqual(['alias/a']);
    const tags = await limited('ListTagResources', { ResourceType: 'key', ResourceId: [keyA, keyB] });
    expect((tags.TagResources.TagResource as Array<{ ResourceId: string }>).map((t) => t.ResourceId)).toEqual([keyA]);
  });

  it('is refused (403) on every management action, and nothing changes', async () => {
    for (const [action, query] of managementCalls()) {
      expect([action, await forbidden(() => limited(action, query))]).toEqual([action, NO]);
    }
    const key = (await admin('DescribeKey', { KeyId: keyA })).KeyMetadata;
    expect([key.KeyState, key.DeletionProtection, key.Description]).toEqual(['Enabled', 'Disabled', '']);
    expect((await admin('ListResourceTags', { KeyId: keyA })).Tags.Tag).toHaveLength(1);
  });

  it('gets the same answer through the 1.2.0 SDK (HMAC-SHA1)', async () => {
    const client = legacyClient(server.endpoint, limitedKeys);
    expect((await client.describeKey(new KMS.DescribeKeyRequest({ keyId: keyA }))).keyMetadata.keyId).toBe(keyA);
    const disable = await sdkError(() => client.disableKey(new KMS.DisableKeyRequest({ keyId: keyA })));
    expect([disable.code, disable.data.HttpStatus]).toEqual(['Forbidden.NoPermission', 403]);
    const describeB = await sdkError(() => client.describeKey(new KMS.DescribeKeyRequest({ keyId: keyB })));
    expect(describeB.code).toBe('Forbidden.KeyNotFound');
  });
});

/**
 * Issue 13: no existence oracle. Whatever a limited key-user names outside its instances is
 * answered byte for byte as something that does not exist (all of Code, Message and
 * HttpStatus; only RequestId differs), by id, alias and ARN. Admin-only actions stay
 * Forbidden.NoPermission (403) whatever they name, which tells nothing.
 */
describe('a key-user limited to instance A cannot tell what exists outside it', () => {
  const MISSING_KEY = 'key-hzz000000000000000000000';
  const MISSING_INSTANCE = 'kst-hzz000000000000000000000';
  const arn = (resource: string) => `acs:kms:${server.config.region}:${server.config.accountId}:${resource}`;
  /** The whole error answer but its request id. */
  const answer = async (fn: () => Promise<unknown>) => {
    const e = await sdkError(fn);
    return { Code: e.data?.Code, Message: e.data?.Message, HttpStatus: e.data?.HttpStatus, status: e.statusCode };
  };
  const keyReads = (): Array<[string, Record<string, unknown>]> => [
    ['DescribeKey', {}],
    ['Encrypt', { Plaintext: 'x' }],
    ['ListKeyVersions', {}],
    ['ListAliasesByKeyId', {}],
    ['ListResourceTags', {}],
  ];

  it('a key of B, a default key and a missing key, by id and by ARN', async () => {
    for (const [action, query] of keyReads()) {
      const missing = await answer(() => limited(action, { ...query, KeyId: MISSING_KEY }));
      expect([action, missing]).toEqual([action, { Code: 'Forbidden.KeyNotFound', Message: 'The specified Key is not found.', HttpStatus: 404, status: 404 }]);
      expect([action, await answer(() => limited(action, { ...query, KeyId: arn(`key/${MISSING_KEY}`) }))]).toEqual([action, missing]);
      for (const keyId of [keyB, keyD, arn(`key/${keyB}`), arn(`key/${keyD}`)]) {
        expect([action, keyId, await answer(() => limited(action, { ...query, KeyId: keyId }))]).toEqual([action, keyId, missing]);
      }
    }
  });

  it('an alias of B and a missing alias, by name and by ARN', async () => {
    for (const [action, query] of keyReads()) {
      const missing = await answer(() => limited(action, { ...query, KeyId: 'alias/missing' }));
      expect([action, missing]).toEqual([action, { Code: 'Forbidden.AliasNotFound', Message: 'The specified Alias is not found.', HttpStatus: 404, status: 404 }]);
      for (const alias of ['alias/b', arn('alias/b'), arn('alias/missing')]) {
        expect([action, alias, await answer(() => limited(action, { ...query, KeyId: alias }))]).toEqual([action, alias, missing]);
      }
    }
  });

  it('a ciphertext of B and a ciphertext whose version does not exist', async () => {
    const ofB = Buffer.from((await admin('Encrypt', { KeyId: keyB, Plaintext: 'for B' })).CiphertextBlob as string, 'base64');
    // The blob starts with its version id (36 ASCII bytes): name a version that never existed.
    const orphan = Buffer.concat([Buffer.from('00000000-0000-4000-8000-000000000000'), ofB.subarray(36)]);
    const missing = await answer(() => limited('Decrypt', { CiphertextBlob: orphan.toString('base64') }));
    expect(missing).toEqual({ Code: 'Forbidden.KeyNotFound', Message: 'The specified Key is not found.', HttpStatus: 404, status: 404 });
    expect(await answer(() => limited('Decrypt', { CiphertextBlob: ofB.toString('base64') }))).toEqual(missing);
  });

  it('instance B and a missing instance', async () => {
    for (const action of ['GetKmsInstance', 'GetKmsInstanceQuotaInfos']) {
      const missing = await answer(() => limited(action, { KmsInstanceId: MISSING_INSTANCE }));
      expect([action, missing]).toEqual([
        action,
        { Code: 'Forbidden.DKMSInstanceNotFound', Message: 'The specified DKMS Instance is not found.', HttpStatus: 403, status: 403 },
      ]);
      expect([action, await answer(() => limited(action, { KmsInstanceId: server.softwareInstanceId }))]).toEqual([action, missing]);
    }
  });

  it('admin-only actions are Forbidden.NoPermission whether what they name exists or not', async () => {
    for (const keyId of [keyA, keyB, MISSING_KEY, 'alias/b', 'alias/missing']) {
      expect([keyId, await forbidden(() => limited('DisableKey', { KeyId: keyId }))]).toEqual([keyId, NO]);
    }
  });
});

describe('an unlimited key-user', () => {
  it('uses and reads any key, in any instance or none', async () => {
    for (const keyId of [keyA, keyB, keyD]) {
      const encrypted = await unlimited('Encrypt', { KeyId: keyId, Plaintext: keyId });
      expect((await unlimited('Decrypt', { CiphertextBlob: encrypted.CiphertextBlob })).Plaintext).toBe(keyId);
      expect((await unlimited('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyId).toBe(keyId);
    }
    const listed = (await unlimited('ListKeys', { PageSize: 100 })).Keys.Key as Array<{ KeyId: string }>;
    expect(listed.map((k) => k.KeyId)).toEqual(expect.arrayContaining([keyA, keyB, keyD]));
  });

  it('still cannot manage anything', async () => {
    for (const [action, query] of managementCalls()) {
      expect([action, await forbidden(() => unlimited(action, query))]).toEqual([action, NO]);
    }
  });
});
