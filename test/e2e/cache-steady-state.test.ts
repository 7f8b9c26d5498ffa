import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/store/db.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 16: in steady state the crypto actions are answered from the metadata caches, without
 * a Postgres query. Every query of the server's pool goes through `pool.connect` (pg-pool's
 * `query` checks a client out the same way), so counting those calls counts every query the
 * requests make. The batched background writers are told to wait longer than the test, and
 * the journal reader (cache/change-journal.ts) is off: its reads are per second, not per request.
 */
let server: TestServer;
let call: CallApi;
let checkouts = 0;

beforeAll(async () => {
  // The cache-change journal's reader (one query a second, whatever the traffic) is off too.
  server = await startServer({ env: { KMS_AUDIT_FLUSH_MS: '60000', KMS_USAGE_FLUSH_MS: '300000', KMS_CACHE_JOURNAL_POLL_MS: '0' } });
  call = openApiClient(server.endpoint, server.admin);
  const db: Db = server.kms.deps.db;
  const connect = db.connect.bind(db) as (...args: unknown[]) => unknown;
  (db as unknown as { connect: (...args: unknown[]) => unknown }).connect = (...args: unknown[]) => {
    checkouts++;
    return connect(...args);
  };
});

afterAll(async () => {
  await server?.stop();
});

/** Store checkouts (so queries) made by `fn`. */
async function queriesDuring(fn: () => Promise<void>): Promise<number> {
  const before = checkouts;
  await fn();
  return checkouts - before;
}

describe('steady state makes no Postgres query', () => {
  it('the counter sees the queries of an uncached read (ListKeys)', async () => {
    expect(await queriesDuring(async () => void (await call('ListKeys', {})))).toBeGreaterThan(0);
  });

  it.each([
    ['HSM', () => server.hsmInstanceId],
    ['SOFTWARE', () => server.softwareInstanceId],
  ])('%s tier: 200 Encrypts and 200 Decrypts, by key id and by alias, after one warm-up each', async (_tier, instance) => {
    const keyId = (await call('CreateKey', { DKMSInstanceId: instance() })).KeyMetadata.KeyId as string;
    const alias = `alias/steady-${randomUUID()}`;
    await call('CreateAlias', { AliasName: alias, KeyId: keyId });
    const blob = (await call('Encrypt', { KeyId: alias, Plaintext: 'warm' })).CiphertextBlob as string;
    await call('Decrypt', { CiphertextBlob: blob });
    await call('Encrypt', { KeyId: keyId, Plaintext: 'warm' });

    const queries = await queriesDuring(async () => {
      for (let i = 0; i < 100; i++) {
        const byId = (await call('Encrypt', { KeyId: keyId, Plaintext: `p${i}` })).CiphertextBlob as string;
        const byAlias = (await call('Encrypt', { KeyId: alias, Plaintext: `q${i}` })).CiphertextBlob as string;
        expect((await call('Decrypt', { CiphertextBlob: byId })).Plaintext).toBe(`p${i}`);
        expect((await call('Decrypt', { CiphertextBlob: byAlias })).Plaintext).toBe(`q${i}`);
      }
    });
    console.log(`${_tier}: Postgres queries during 200 Encrypts + 200 Decrypts: ${queries}`);
    expect(queries).toBe(0);
    const stats = server.kms.caches.caches.stats();
    expect(stats.keys.hits).toBeGreaterThanOrEqual(400);
    expect(stats.versions.hits).toBeGreaterThanOrEqual(400);
  });

  it('first uses of keys asked for together cost one query for all, and prime each primary version', async () => {
    const keyIds: string[] = [];
    for (let i = 0; i < 3; i++) keyIds.push((await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string);
    const missing = 'key-00000000-0000-0000-0000-000000000000';
    const { repositories } = server.kms.deps;
    let found: Awaited<ReturnType<typeof repositories.keys.byId>>[] = [];
    const together = await queriesDuring(async () => {
      found = await Promise.all([...keyIds, missing, keyIds[0]!].map((id) => repositories.keys.byId(id)));
    });
    expect(together).toBe(1);
    expect(found.map((k) => k?.id)).toEqual([...keyIds, undefined, keyIds[0]]);
    const versions = await queriesDuring(async () => {
      for (const key of found.slice(0, 3)) expect((await repositories.versions.byId(key!.primaryVersionId))?.keyId).toBe(key!.id);
    });
    expect(versions).toBe(0);
  });

  it('GenerateDataKey, ReEncrypt, GenerateMac/VerifyMac, AsymmetricSign/Verify and DescribeKey neither', async () => {
    const symmetric = (await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId })).KeyMetadata.KeyId as string;
    const target = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string;
    const mac = (await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId, KeySpec: 'HMAC_SHA256' })).KeyMetadata.KeyId as string;
    const signing = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, KeySpec: 'EC_P256', KeyUsage: 'SIGN/VERIFY' })).KeyMetadata;
    const digest = createHash('sha256').update('message').digest().toString('base64');
    const Message = Buffer.from('message').toString('base64');
    const round = async () => {
      const dataKey = await call('GenerateDataKey', { KeyId: symmetric });
      await call('ReEncrypt', { CiphertextBlob: dataKey.CiphertextBlob, DestinationKeyId: target });
      const { Mac } = await call('GenerateMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message });
      expect((await call('VerifyMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message, Mac })).Value).toBe(true);
      const signed = { KeyId: signing.KeyId, KeyVersionId: signing.PrimaryKeyVersion, Algorithm: 'ECDSA_SHA_256', Digest: digest };
      const { Value } = await call('AsymmetricSign', signed);
      expect((await call('AsymmetricVerify', { ...signed, Value })).Value).toBe(true);
      await call('DescribeKey', { KeyId: symmetric });
    };
    await round();
    const queries = await queriesDuring(async () => {
      for (let i = 0; i < 20; i++) await round();
    });
    expect(queries).toBe(0);
  });
});
