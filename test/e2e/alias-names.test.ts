import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertAlias } from '../../src/store/aliases.js';
import { createKeyId } from '../helpers/fixtures.js';
import { KMS, type CallApi, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 13: alias names are case-insensitive and case-preserving, like AWS KMS's reserved
 * prefix rule and a case-insensitive file system: `alias/Orders` and `alias/orders` are one
 * alias, found, rebound and deleted by any spelling, listed as created; the reserved
 * `alias/acs` prefix holds in any case. Through the real SDKs.
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

const aliasArn = (name: string) => `acs:kms:${server.config.region}:${server.config.accountId}:${name}`;

describe('alias names ignore case', () => {
  it('the reserved prefix alias/acs is refused in any case', async () => {
    const keyId = await createKeyId(call);
    for (const name of ['alias/ACS-x', 'alias/Acs', 'alias/aCs/rds']) {
      const error = await sdkError(() => call('CreateAlias', { AliasName: name, KeyId: keyId }));
      expect([name, error.code, error.statusCode]).toEqual([name, 'InvalidParameter', 400]);
    }
  });

  it('alias/A and alias/a cannot coexist: the second is AliasAlreadyExists', async () => {
    const first = await createKeyId(call);
    const second = await createKeyId(call);
    await call('CreateAlias', { AliasName: 'alias/Case/Orders', KeyId: first });
    for (const name of ['alias/case/orders', 'alias/CASE/ORDERS', 'alias/Case/Orders']) {
      const error = await sdkError(() => call('CreateAlias', { AliasName: name, KeyId: second }));
      expect([name, error.code, error.statusCode]).toEqual([name, 'AliasAlreadyExists', 400]);
    }
    const listed = await call('ListAliasesByKeyId', { KeyId: first });
    // Listed as created.
    expect(listed.Aliases.Alias).toEqual([{ AliasName: 'alias/Case/Orders', AliasArn: aliasArn('alias/Case/Orders'), KeyId: first }]);
    expect((await call('ListAliasesByKeyId', { KeyId: second })).TotalCount).toBe(0);
  });

  it('any spelling finds, rebinds and deletes the alias (by name and by ARN, both SDKs)', async () => {
    const first = await createKeyId(call);
    const second = await createKeyId(call);
    await call('CreateAlias', { AliasName: 'alias/Mixed', KeyId: first });
    expect((await call('DescribeKey', { KeyId: 'alias/mixed' })).KeyMetadata.KeyId).toBe(first);
    expect((await call('DescribeKey', { KeyId: aliasArn('alias/MIXED') })).KeyMetadata.KeyId).toBe(first);
    const legacy = legacyClient(server.endpoint, server.admin);
    expect((await legacy.encrypt(new KMS.EncryptRequest({ keyId: 'alias/mIxEd', plaintext: 'x' }))).keyId).toBe(first);

    await call('UpdateAlias', { AliasName: 'alias/MIXED', KeyId: second });
    expect((await call('DescribeKey', { KeyId: 'alias/Mixed' })).KeyMetadata.KeyId).toBe(second);
    // Still one alias, still spelled as created.
    const all = (await call('ListAliases', { PageSize: 100 })).Aliases.Alias as Array<{ AliasName: string }>;
    expect(all.map((a) => a.AliasName).filter((n) => n.toLowerCase() === 'alias/mixed')).toEqual(['alias/Mixed']);

    await call('DeleteAlias', { AliasName: 'alias/mixed' });
    const gone = await sdkError(() => call('DescribeKey', { KeyId: 'alias/Mixed' }));
    expect([gone.code, gone.statusCode]).toEqual(['Forbidden.AliasNotFound', 404]);
  });

  it('parallel CreateAlias of one name in different cases: exactly one wins, the rest AliasAlreadyExists', async () => {
    const keyId = await createKeyId(call);
    const spellings = ['alias/Race', 'alias/race', 'alias/RACE', 'alias/rAce', 'alias/raCE', 'alias/RaCe'];
    const results = await Promise.allSettled(spellings.map((name) => call('CreateAlias', { AliasName: name, KeyId: keyId })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as { data: { Code: string } }).data.Code).toBe('AliasAlreadyExists');
    }
  });

  it('the store refuses a second spelling without an error (the unique index on lower(name))', async () => {
    const keyId = await createKeyId(call);
    expect(await insertAlias(server.kms.deps.db, 'alias/Store', keyId)).toBe(true);
    expect(await insertAlias(server.kms.deps.db, 'alias/STORE', keyId)).toBe(false);
  });
});

describe('migration 004', () => {
  it('refuses, naming them, to run over names that differ only in case', async () => {
    const keyId = await createKeyId(call);
    const db = server.kms.deps.db;
    const sql = await readFile(new URL('../../src/store/migrations/004_alias_names_case_insensitive.sql', import.meta.url), 'utf8');
    const tx = await db.connect();
    try {
      await tx.query('BEGIN');
      // The state before the migration: no case-insensitive index, two spellings stored.
      await tx.query('DROP INDEX aliases_name_lower_unique');
      await tx.query("INSERT INTO aliases (name, key_id) VALUES ('alias/Twin', $1), ('alias/twin', $1)", [keyId]);
      await expect(tx.query(sql)).rejects.toThrow(/alias\/Twin, alias\/twin.*Delete or rename/);
    } finally {
      await tx.query('ROLLBACK');
      tx.release();
    }
  });
});
