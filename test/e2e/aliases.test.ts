import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_ALIASES_PER_REGION } from '../../src/services/aliases.js';
import { createKeyId } from '../helpers/fixtures.js';
import { KMS, type CallApi, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/** Issue 3, aliases (alibaba-api.md §3.5, §5.6) through the real SDKs. */
let server: TestServer;
let call: CallApi;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
});

afterAll(async () => {
  await server?.stop();
});

const aliasArn = (name: string) => `acs:kms:${server.config.region}:${server.config.accountId}:${name}`;

describe('@alicloud/kms20160120@1.2.0', () => {
  it('creates, lists, rebinds and deletes aliases; every KeyId parameter takes them', async () => {
    const client = legacyClient(server.endpoint, server.admin);
    const first = await createKeyId(call);
    const second = await createKeyId(call);
    await client.createAlias(new KMS.CreateAliasRequest({ aliasName: 'alias/app/orders', keyId: first }));
    await client.createAlias(new KMS.CreateAliasRequest({ aliasName: 'alias/app/orders-backup', keyId: first }));

    const byKey = await client.listAliasesByKeyId(new KMS.ListAliasesByKeyIdRequest({ keyId: first }));
    expect(byKey.totalCount).toBe(2);
    expect(byKey.aliases.alias).toEqual([
      { aliasName: 'alias/app/orders', aliasArn: aliasArn('alias/app/orders'), keyId: first },
      { aliasName: 'alias/app/orders-backup', aliasArn: aliasArn('alias/app/orders-backup'), keyId: first },
    ]);

    // The alias works wherever a KeyId goes: DescribeKey, Encrypt.
    const described = await client.describeKey(new KMS.DescribeKeyRequest({ keyId: 'alias/app/orders' }));
    expect(described.keyMetadata.keyId).toBe(first);
    const encrypted = await client.encrypt(new KMS.EncryptRequest({ keyId: 'alias/app/orders', plaintext: 'by alias' }));
    expect(encrypted.keyId).toBe(first);

    await client.updateAlias(new KMS.UpdateAliasRequest({ aliasName: 'alias/app/orders', keyId: second }));
    expect((await client.describeKey(new KMS.DescribeKeyRequest({ keyId: 'alias/app/orders' }))).keyMetadata.keyId).toBe(second);
    // The old ciphertext still decrypts: it names its version, not the alias.
    expect((await client.decrypt(new KMS.DecryptRequest({ ciphertextBlob: encrypted.ciphertextBlob }))).plaintext).toBe('by alias');

    const all = await client.listAliases(new KMS.ListAliasesRequest({ pageSize: 100 }));
    expect(all.aliases.alias.map((a: { aliasName: string }) => a.aliasName)).toEqual(
      expect.arrayContaining(['alias/app/orders', 'alias/app/orders-backup']),
    );

    await client.deleteAlias(new KMS.DeleteAliasRequest({ aliasName: 'alias/app/orders' }));
    const gone = await sdkError(() => client.describeKey(new KMS.DescribeKeyRequest({ keyId: 'alias/app/orders' })));
    expect(gone.code).toBe('Forbidden.AliasNotFound');
    expect(gone.data.HttpStatus).toBe(404);
  });
});

describe('callApi (ACS3)', () => {
  it('refuses a duplicate with AliasAlreadyExists (400) and unknown aliases with Forbidden.AliasNotFound (404)', async () => {
    const keyId = await createKeyId(call);
    await call('CreateAlias', { AliasName: 'alias/dup', KeyId: keyId });
    const dup = await sdkError(() => call('CreateAlias', { AliasName: 'alias/dup', KeyId: keyId }));
    expect([dup.code, dup.statusCode]).toEqual(['AliasAlreadyExists', 400]);
    for (const [action, query] of [
      ['UpdateAlias', { AliasName: 'alias/nobody', KeyId: keyId }],
      ['DeleteAlias', { AliasName: 'alias/nobody' }],
      ['DescribeKey', { KeyId: 'alias/nobody' }],
      ['CreateAlias', { AliasName: 'alias/new', KeyId: 'alias/nobody' }],
    ] as const) {
      const error = await sdkError(() => call(action, query));
      expect([action, error.code, error.statusCode]).toEqual([action, 'Forbidden.AliasNotFound', 404]);
    }
  });

  it('binds by key ARN and by alias ARN', async () => {
    const keyId = await createKeyId(call);
    const keyArn = `acs:kms:${server.config.region}:${server.config.accountId}:key/${keyId}`;
    await call('CreateAlias', { AliasName: 'alias/by-arn', KeyId: keyArn });
    await call('CreateAlias', { AliasName: 'alias/by-alias-arn', KeyId: aliasArn('alias/by-arn') });
    const listed = await call('ListAliasesByKeyId', { KeyId: aliasArn('alias/by-alias-arn') });
    expect((listed.Aliases.Alias as Array<{ AliasName: string }>).map((a) => a.AliasName)).toEqual(['alias/by-alias-arn', 'alias/by-arn']);
  });

  it('pages ListAliases with TotalCount', async () => {
    const keyId = await createKeyId(call);
    for (const n of [1, 2, 3]) await call('CreateAlias', { AliasName: `alias/page/${n}`, KeyId: keyId });
    const page = await call('ListAliasesByKeyId', { KeyId: keyId, PageNumber: 2, PageSize: 2 });
    expect(page.TotalCount).toBe(3);
    expect(page.PageNumber).toBe(2);
    expect(page.Aliases.Alias).toEqual([{ AliasName: 'alias/page/3', AliasArn: aliasArn('alias/page/3'), KeyId: keyId }]);
  });

  it('follows the key state: no new alias for a PendingDeletion key, deleting one is always fine', async () => {
    const keyId = await createKeyId(call);
    await call('CreateAlias', { AliasName: 'alias/doomed', KeyId: keyId });
    await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
    const create = await sdkError(() => call('CreateAlias', { AliasName: 'alias/doomed-2', KeyId: keyId }));
    expect([create.code, create.statusCode]).toEqual(['Rejected.StateModifiedFailed', 409]);
    const other = await createKeyId(call);
    await call('CreateAlias', { AliasName: 'alias/elsewhere', KeyId: other });
    const rebind = await sdkError(() => call('UpdateAlias', { AliasName: 'alias/elsewhere', KeyId: keyId }));
    expect([rebind.code, rebind.statusCode]).toEqual(['Rejected.StateModifiedFailed', 409]);
    // Rebinding *away* from a PendingDeletion key is decided by the target only.
    await call('UpdateAlias', { AliasName: 'alias/doomed', KeyId: other });
    await call('DeleteAlias', { AliasName: 'alias/doomed' });
  });

  it('validates names: prefix, characters, length, reserved alias/acs', async () => {
    const keyId = await createKeyId(call);
    for (const name of ['orders', 'alias/', 'alias/has space', 'alias/ünïcode', 'alias/acs', 'alias/acs/ecs', 'alias/Acs-is-reserved_in/any-case', `alias/${'x'.repeat(250)}`]) {
      const error = await sdkError(() => call('CreateAlias', { AliasName: name, KeyId: keyId }));
      expect([name, error.code, error.statusCode]).toEqual([name, 'InvalidParameter', 400]);
    }
    await call('CreateAlias', { AliasName: `alias/${'x'.repeat(249)}`, KeyId: keyId });
    await call('CreateAlias', { AliasName: 'alias/Ac-is-fine', KeyId: keyId });
  });

  it('parallel CreateAlias of one name: exactly one wins', async () => {
    const keyId = await createKeyId(call);
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => call('CreateAlias', { AliasName: 'alias/race', KeyId: keyId })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as { data: { Code: string } }).data.Code).toBe('AliasAlreadyExists');
    }
  });

  it(`caps the region at ${MAX_ALIASES_PER_REGION} aliases with Rejected.LimitExceeded`, async () => {
    const keyId = await createKeyId(call);
    const { rows } = await server.kms.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM aliases');
    // Fill up to the cap directly in the store (300 API calls would only slow the test down).
    await server.kms.deps.db.query(
      "INSERT INTO aliases (name, key_id) SELECT 'alias/filler/' || g, $1 FROM generate_series(1, $2) g",
      [keyId, MAX_ALIASES_PER_REGION - rows[0]!.n],
    );
    const error = await sdkError(() => call('CreateAlias', { AliasName: 'alias/one-too-many', KeyId: keyId }));
    expect([error.code, error.statusCode]).toEqual(['Rejected.LimitExceeded', 400]);
    await call('DeleteAlias', { AliasName: 'alias/filler/1' });
    await call('CreateAlias', { AliasName: 'alias/one-too-many', KeyId: keyId });
  });
});
