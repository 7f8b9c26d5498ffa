import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccessKey } from '../../src/services/access.js';
import { systemCaller } from '../../src/services/context.js';
import { createInstance } from '../../src/services/instances.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/** Issue 3, instance APIs of the 3.x SDK (callApi only: 1.2.0 has none): quota infos and the default instance. */
let server: TestServer;
let call: CallApi;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
});

afterAll(async () => {
  await server?.stop();
});

describe('GetKmsInstanceQuotaInfos', () => {
  it('answers every resource type as a bare array, key usage counted in versions', async () => {
    await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId });
    await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, Origin: 'EXTERNAL' });
    const r = await call('GetKmsInstanceQuotaInfos', { KmsInstanceId: server.softwareInstanceId });
    expect(r.KmsInstanceId).toBe(server.softwareInstanceId);
    expect(r.KmsInstanceQuotaInfos).toEqual([
      { ResourceType: 'key', ResourceQuota: 200, UsedQuantity: 2 },
      { ResourceType: 'secret', ResourceQuota: 0, UsedQuantity: 0 },
      { ResourceType: 'qps', ResourceQuota: 1000, UsedQuantity: 0 },
      { ResourceType: 'vpc', ResourceQuota: 0, UsedQuantity: 0 },
    ]);
    const { rows } = await server.kms.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM key_versions WHERE instance_id = $1', [
      server.softwareInstanceId,
    ]);
    expect(r.KmsInstanceQuotaInfos[0].UsedQuantity).toBe(rows[0]!.n);

    const qps = await call('GetKmsInstanceQuotaInfos', { KmsInstanceId: server.softwareInstanceId, ResourceType: 'qps' });
    expect(qps.KmsInstanceQuotaInfos).toEqual([{ ResourceType: 'qps', ResourceQuota: 1000, UsedQuantity: 0 }]);
  });

  it('refuses an unknown instance (404), a bad ResourceType (400) and a missing id (400)', async () => {
    const unknown = await sdkError(() => call('GetKmsInstanceQuotaInfos', { KmsInstanceId: 'kst-hzznothing' }));
    expect([unknown.code, unknown.statusCode]).toEqual(['Forbidden.DKMSInstanceNotFound', 403]);
    const badType = await sdkError(() => call('GetKmsInstanceQuotaInfos', { KmsInstanceId: server.hsmInstanceId, ResourceType: 'Key' }));
    expect([badType.code, badType.statusCode]).toEqual(['InvalidParameter', 400]);
    const missing = await sdkError(() => call('GetKmsInstanceQuotaInfos', {}));
    expect([missing.code, missing.statusCode]).toEqual(['MissingParameter', 400]);
  });
});

describe('GetDefaultKmsInstance', () => {
  it('is the oldest SOFTWARE instance the caller may see, or empty', async () => {
    await createInstance(server.kms.deps, { type: 'SOFTWARE', keyQuota: 10, qps: 10, name: 'younger' }, systemCaller);
    expect(await call('GetDefaultKmsInstance', {})).toMatchObject({ DefaultKmsInstanceId: server.softwareInstanceId });

    const hsmOnly = await createAccessKey(server.kms.deps, { role: 'key-user', instanceIds: [server.hsmInstanceId] }, systemCaller);
    const asHsmUser = openApiClient(server.endpoint, hsmOnly);
    expect((await asHsmUser('GetDefaultKmsInstance', {})).DefaultKmsInstanceId).toBe('');
    const refused = await sdkError(() => asHsmUser('GetKmsInstanceQuotaInfos', { KmsInstanceId: server.softwareInstanceId }));
    // Another instance is answered as a missing one (issue 13: no existence oracle).
    expect([refused.code, refused.statusCode]).toEqual(['Forbidden.DKMSInstanceNotFound', 403]);
    expect((await asHsmUser('GetKmsInstanceQuotaInfos', { KmsInstanceId: server.hsmInstanceId, ResourceType: 'key' })).KmsInstanceQuotaInfos).toHaveLength(1);
  });
});
