import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pkcs11js from 'pkcs11js';
import { findObjects } from '../../src/hsm/pkcs11/object-inventory.js';
import { createAccessKey } from '../../src/services/access.js';
import { systemCaller } from '../../src/services/context.js';
import { resetRig } from '../../src/services/reset.js';
import { createKeyIn } from '../helpers/fixtures.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';
import { withTokenSession } from '../helpers/token-session.js';

/**
 * Issue 18, `kms reset --all` (services/reset.ts) in process: keys of both tiers, their token
 * objects and the wrapping pairs issued for them go, instances and access keys go but the kept
 * one, and the caches of this process forget them at once (a deleted access key is refused).
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

const objectsWithIds = (ids: readonly string[]) =>
  withTokenSession(server, (p11, session) => ids.flatMap((id) => findObjects(p11, session, [{ type: pkcs11js.CKA_ID, value: Buffer.from(id, 'utf8') }])).length);

const count = async (sql: string) => Number((await server.kms.deps.db.query<{ n: string }>(`SELECT count(*) AS n FROM (${sql}) q`)).rows[0]?.n);

describe('resetRig with everything', () => {
  it('deletes keys with their token objects, instances and access keys but the kept one', async () => {
    const aes = await createKeyIn(call, server.hsmInstanceId);
    const ec = await createKeyIn(call, server.hsmInstanceId, { KeySpec: 'EC_P256' });
    const byok = await createKeyIn(call, server.hsmInstanceId, { Origin: 'EXTERNAL' });
    await createKeyIn(call, server.softwareInstanceId);
    const parameters = await call('GetParametersForImport', { KeyId: byok.keyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_2048' });
    expect(parameters.ImportToken).toBeTruthy();
    const issued = (await server.kms.deps.db.query<{ id: string }>('SELECT id FROM wrapping_keys WHERE key_id = $1', [byok.keyId])).rows.map((r) => r.id);
    expect(issued).toHaveLength(1);
    const tokenIds = [aes.versionId, ec.versionId, ...issued];
    expect(await objectsWithIds(tokenIds)).toBeGreaterThanOrEqual(4);

    const user = await createAccessKey(server.kms.deps, { role: 'key-user' }, systemCaller);
    const asUser = openApiClient(server.endpoint, user);
    expect((await asUser('ListKeys', {})).TotalCount).toBeGreaterThanOrEqual(0);

    const result = await resetRig(server.kms.deps, { everything: true, keepAccessKeyId: server.admin.accessKeyId });
    expect(result).toMatchObject({ keys: 4, versions: 4 });
    expect(await objectsWithIds(tokenIds)).toBe(0);
    expect(await count('SELECT 1 FROM keys UNION ALL SELECT 1 FROM key_versions UNION ALL SELECT 1 FROM instances')).toBe(0);
    expect((await server.kms.deps.db.query<{ id: string }>('SELECT id FROM access_keys')).rows.map((r) => r.id)).toEqual([server.admin.accessKeyId]);

    // The kept admin key still works; the deleted key-user is refused at once (its cache entry dropped).
    expect((await call('ListKeys', {})).TotalCount).toBe(0);
    expect((await call('ListKmsInstances', {})).TotalCount).toBe(0);
    expect((await sdkError(() => asUser('ListKeys', {}))).code).toBe('InvalidAccessKeyId.NotFound');
    expect((await sdkError(() => call('DescribeKey', { KeyId: aes.keyId }))).code).toBe('Forbidden.KeyNotFound');
  });
});
