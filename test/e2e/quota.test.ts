import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unavailable } from '../../src/domain/errors.js';
import { systemCaller } from '../../src/services/context.js';
import { updateInstance } from '../../src/services/instances.js';
import { deleteKeyIfDue } from '../../src/services/key-deletion.js';
import { resetRig } from '../../src/services/reset.js';
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
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as { data: { Code: string; HttpStatus: number; Message: string; RequestId: string } }] : []));
    expect(created).toHaveLength(QUOTA);
    expect(refused).toHaveLength(50 - QUOTA);
    for (const error of refused) {
      // A 500's message holds only the request id: the cause is in the server's log.
      const cause = error.data.HttpStatus === 500 ? server.logs.filter((line) => line.includes(error.data.RequestId)).join('') : '';
      expect([error.data.Code, error.data.HttpStatus], `${error.data.Code}: ${error.data.Message} ${cause}`).toEqual(['Rejected.LimitExceeded', 400]);
    }

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

describe('the instance counters of versions and keys (migrations 010, 013) follow every path that adds or removes them', () => {
  /** The counters store/quota.ts keeps, and the versions and keys counted (what they must always equal). */
  async function counterAndCount(instanceId: string) {
    const { rows } = await server.kms.deps.db.query<{ counter: number; versions: number; keyCounter: number; keys: number }>(
      `SELECT versions_used AS counter, (SELECT count(*)::int FROM key_versions WHERE instance_id = $1) AS versions,
              keys_used AS "keyCounter", (SELECT count(*)::int FROM keys WHERE instance_id = $1) AS keys
         FROM instances WHERE id = $1`,
      [instanceId],
    );
    return rows[0]!;
  }
  const expectAgreement = async (instanceId: string, versions: number) => {
    const counted = await counterAndCount(instanceId);
    expect(counted).toMatchObject({ counter: versions, versions });
    expect(counted.keyCounter).toBe(counted.keys);
    expect((await keyQuotaInfo(instanceId)).UsedQuantity).toBe(versions);
    // ListKeys' TotalCount reads the key counters: it matches the keys listed, per instance and in all.
    const filtered = await call('ListKeys', { PageSize: 100, Filters: JSON.stringify([{ Key: 'DKMSInstanceId', Values: [instanceId] }]) });
    expect(filtered.TotalCount).toBe(counted.keys);
    const { rows } = await server.kms.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM keys');
    expect((await call('ListKeys', { PageSize: 1 })).TotalCount).toBe(rows[0]!.n);
  };

  it('creates, refusals, rotations, a key deletion and a reset', async () => {
    const instanceId = server.softwareInstanceId;
    const start = (await counterAndCount(instanceId)).versions;
    await server.kms.deps.db.query('UPDATE instances SET key_quota = $2 WHERE id = $1', [instanceId, start + 5]);

    const keys = await Promise.all([0, 1, 2].map(async () => (await call('CreateKey', { DKMSInstanceId: instanceId })).KeyMetadata.KeyId as string));
    await expectAgreement(instanceId, start + 3);

    // Two rotations at once take a unit each, under the same lock.
    await Promise.all([call('CreateKeyVersion', { KeyId: keys[0] }), call('CreateKeyVersion', { KeyId: keys[1] })]);
    await expectAgreement(instanceId, start + 5);
    const full = await sdkError(() => call('CreateKeyVersion', { KeyId: keys[2] }));
    expect(full.code).toBe('Rejected.LimitExceeded');
    const fullCreate = await sdkError(() => call('CreateKey', { DKMSInstanceId: instanceId }));
    expect(fullCreate.code).toBe('Rejected.LimitExceeded');
    await expectAgreement(instanceId, start + 5);

    // Deleting the rotated key gives back its two units; the freed room is usable at once.
    await call('ScheduleKeyDeletion', { KeyId: keys[0], PendingWindowInDays: 7 });
    const { rows } = await server.kms.deps.db.query<{ delete_date: Date }>(
      `UPDATE keys SET delete_date = now() - interval '1 second' WHERE id = $1 RETURNING delete_date`,
      [keys[0]],
    );
    expect(await deleteKeyIfDue(server.kms.deps, keys[0]!, rows[0]!.delete_date)).toBe('deleted');
    await expectAgreement(instanceId, start + 3);
    await call('CreateKeyVersion', { KeyId: keys[2] });
    await expectAgreement(instanceId, start + 4);

    // A quota lowered below the counter is refused by UpdateKmsInstance's check (the same number).
    await expect(updateInstance(server.kms.deps, instanceId, { keyQuota: start + 3 }, systemCaller)).rejects.toMatchObject({ code: 'InvalidParameter' });

    // A reset deletes every version: every counter goes back to 0.
    await resetRig(server.kms.deps, {});
    await expectAgreement(instanceId, 0);
    await expectAgreement(server.hsmInstanceId, 0);
    await call('CreateKey', { DKMSInstanceId: instanceId });
    await expectAgreement(instanceId, 1);
  });
});
