import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unavailable } from '../../src/domain/errors.js';
import { findObjects } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import { withTokenSession } from '../helpers/token-session.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 3, quota: every key version consumes one unit of its instance's key quota, the check
 * holds under concurrency, GetKmsInstanceQuotaInfos agrees with Postgres, and a refused or
 * failed CreateKey leaves nothing in Postgres or in the HSM.
 */
const QUOTA = 10;
let server: TestServer;
let call: CallApi;

beforeAll(async () => {
  server = await startServer({ hsmKeyQuota: QUOTA });
  call = openApiClient(server.endpoint, server.admin);
});

afterAll(async () => {
  await server?.stop();
});

/** Secret-key objects on the token, counted outside the service (this process's token). */
function tokenSecretKeyCount(): Promise<number> {
  return withTokenSession(
    server,
    (p11, session) =>
      findObjects(p11, session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_TOKEN, value: true },
      ]).length,
  );
}

async function instanceCounts(instanceId: string) {
  const { rows } = await server.kms.deps.db.query<{ keys: number; versions: number }>(
    `SELECT (SELECT count(*)::int FROM keys WHERE instance_id = $1) AS keys,
            (SELECT count(*)::int FROM key_versions WHERE instance_id = $1) AS versions`,
    [instanceId],
  );
  return rows[0]!;
}

async function keyQuotaInfo(instanceId: string) {
  const r = await call('GetKmsInstanceQuotaInfos', { KmsInstanceId: instanceId, ResourceType: 'key' });
  expect(r.KmsInstanceId).toBe(instanceId);
  expect(Array.isArray(r.KmsInstanceQuotaInfos)).toBe(true);
  return r.KmsInstanceQuotaInfos[0] as { ResourceType: string; ResourceQuota: number; UsedQuantity: number };
}

describe('50 parallel CreateKey against an HSM instance with a quota of 10', () => {
  it('exactly 10 succeed, 40 get Rejected.LimitExceeded, and Postgres, the HSM and the quota API agree', async () => {
    const objectsBefore = await tokenSecretKeyCount();
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) => call('CreateKey', { DKMSInstanceId: server.hsmInstanceId, Description: `race ${i}` })),
    );
    const created = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.KeyMetadata.KeyId as string] : []));
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as { data: { Code: string; HttpStatus: number } }] : []));
    expect(created).toHaveLength(QUOTA);
    expect(refused).toHaveLength(50 - QUOTA);
    for (const error of refused) expect([error.data.Code, error.data.HttpStatus]).toEqual(['Rejected.LimitExceeded', 400]);

    const counts = await instanceCounts(server.hsmInstanceId);
    expect(counts).toEqual({ keys: QUOTA, versions: QUOTA, });

    // Every committed version has its token object, and the 40 refusals created none.
    const { rows } = await server.kms.deps.db.query<{ id: string; key_id: string }>('SELECT id, key_id FROM key_versions WHERE instance_id = $1', [
      server.hsmInstanceId,
    ]);
    expect(rows.map((r) => r.key_id).sort()).toEqual([...created].sort());
    for (const { id } of rows) expect(await server.kms.deps.hsm.hasVersionKey(id)).toBe(true);
    expect((await tokenSecretKeyCount()) - objectsBefore).toBe(QUOTA);

    const info = await keyQuotaInfo(server.hsmInstanceId);
    expect(info).toEqual({ ResourceType: 'key', ResourceQuota: QUOTA, UsedQuantity: QUOTA });
    expect(info.UsedQuantity).toBe(counts.versions);

    // Each of the 10 keys works.
    const encrypted = await call('Encrypt', { KeyId: created[0], Plaintext: 'within quota' });
    expect((await call('Decrypt', { CiphertextBlob: encrypted.CiphertextBlob })).Plaintext).toBe('within quota');
  });

  it('raising the quota lets one more key in; default keys never count against an instance', async () => {
    await server.kms.deps.db.query('UPDATE instances SET key_quota = key_quota + 1 WHERE id = $1', [server.hsmInstanceId]);
    await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId });
    const full = await sdkError(() => call('CreateKey', { DKMSInstanceId: server.hsmInstanceId }));
    expect(full.code).toBe('Rejected.LimitExceeded');
    await call('CreateKey', {});
    expect((await keyQuotaInfo(server.hsmInstanceId)).UsedQuantity).toBe(QUOTA + 1);
  });
});

describe('a failed CreateKey leaves nothing behind', () => {
  it('the HSM refusing to generate rolls back the key, its version, its tags and the quota unit', async () => {
    const instanceId = server.softwareInstanceId;
    const { hsmInstanceId } = server;
    await server.kms.deps.db.query('UPDATE instances SET key_quota = key_quota + 5 WHERE id = $1', [hsmInstanceId]);
    const before = await instanceCounts(hsmInstanceId);
    const objectsBefore = await tokenSecretKeyCount();
    const { rows: tagsBefore } = await server.kms.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM key_tags');

    const hsm = server.kms.deps.hsm as { generateVersionKey: (...args: unknown[]) => Promise<void> };
    hsm.generateVersionKey = async () => {
      throw unavailable('The HSM is not reachable.');
    };
    try {
      const error = await sdkError(() =>
        call('CreateKey', { DKMSInstanceId: hsmInstanceId, Tags: JSON.stringify([{ TagKey: 'doomed', TagValue: 'yes' }]) }),
      );
      expect([error.code, error.statusCode]).toEqual(['ServiceUnavailableTemporary', 503]);
    } finally {
      delete (hsm as Partial<typeof hsm>).generateVersionKey;
    }

    expect(await instanceCounts(hsmInstanceId)).toEqual(before);
    expect(await tokenSecretKeyCount()).toBe(objectsBefore);
    const { rows: tagsAfter } = await server.kms.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM key_tags');
    expect(tagsAfter[0]!.n).toBe(tagsBefore[0]!.n);
    expect((await keyQuotaInfo(hsmInstanceId)).UsedQuantity).toBe(before.versions);

    // And the instance is fine afterwards: the next CreateKey takes the unit.
    await call('CreateKey', { DKMSInstanceId: hsmInstanceId });
    expect((await instanceCounts(hsmInstanceId)).versions).toBe(before.versions + 1);
    expect((await instanceCounts(instanceId)).versions).toBe(0);
  });

  it('a refused parameter (bad spec for SOFTWARE) consumes no quota unit', async () => {
    const before = await instanceCounts(server.softwareInstanceId);
    const error = await sdkError(() => call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, KeySpec: 'Aliyun_AES_128' }));
    expect(error.code).toBe('InvalidParameter');
    expect(await instanceCounts(server.softwareInstanceId)).toEqual(before);
  });
});
