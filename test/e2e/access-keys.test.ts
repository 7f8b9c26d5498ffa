import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidatingLru } from '../../src/cache/invalidating-lru.js';
import { type Credential, CredentialDirectory, createAccessKey } from '../../src/services/access.js';
import { systemCaller } from '../../src/services/context.js';
import { setAccessKeyStatus } from '../../src/store/access-keys.js';
import { waitFor } from '../helpers/jobs.js';
import { openApiClient, sdkError } from '../helpers/sdk.js';
import { type Credentials, type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 13, access keys: the signature is checked before the key's status (without the
 * secret nobody learns whether a key is disabled). The credential cache is invalidated by
 * every write through the store (issue 16; across processes: test/e2e/cache-invalidation.test.ts)
 * and otherwise bounded by its age limit.
 */
let server: TestServer;

beforeAll(async () => {
  // No cache: every request reads the key, so a change elsewhere counts at once.
  server = await startServer({ env: { KMS_ACCESS_KEY_CACHE_TTL_MS: '0' } });
});

afterAll(async () => {
  await server?.stop();
});

const newKeyUser = async (): Promise<Credentials> => createAccessKey(server.kms.deps, { role: 'key-user' }, systemCaller);
const refusal = async (credentials: Credentials) => {
  const e = await sdkError(() => openApiClient(server.endpoint, credentials)('ListKeys', {}));
  return [e.code, e.statusCode];
};

describe('a disabled access key', () => {
  it('with a wrong secret: SignatureDoesNotMatch, the same answer as for an enabled key', async () => {
    const enabled = await newKeyUser();
    const disabled = await newKeyUser();
    await setAccessKeyStatus(server.kms.deps.db, disabled.accessKeyId, 'Disabled');
    const wrong = (c: Credentials) => ({ ...c, accessKeySecret: `${c.accessKeySecret}x` });
    expect(await refusal(wrong(disabled))).toEqual(['SignatureDoesNotMatch', 400]);
    expect(await refusal(wrong(enabled))).toEqual(['SignatureDoesNotMatch', 400]);
  });

  it('with the right secret: Forbidden.AccessKey (403)', async () => {
    const disabled = await newKeyUser();
    await setAccessKeyStatus(server.kms.deps.db, disabled.accessKeyId, 'Disabled');
    expect(await refusal(disabled)).toEqual(['Forbidden.AccessKey', 403]);
  });

  it('with no cache (TTL 0), stops working on the next request after it is disabled elsewhere, and works again once enabled', async () => {
    const keyUser = await newKeyUser();
    const client = openApiClient(server.endpoint, keyUser);
    expect((await client('ListKeys', {})).RequestId).toBeTruthy();
    await setAccessKeyStatus(server.kms.deps.db, keyUser.accessKeyId, 'Disabled');
    expect(await refusal(keyUser)).toEqual(['Forbidden.AccessKey', 403]);
    await setAccessKeyStatus(server.kms.deps.db, keyUser.accessKeyId, 'Enabled');
    expect((await client('ListKeys', {})).RequestId).toBeTruthy();
  });
});

describe('the credential cache', () => {
  // A write no store function made (as if its invalidation were lost): only the age bound or an invalidation ends the entry.
  const disableBehindTheCachesBack = (id: string) => server.kms.deps.db.query("UPDATE access_keys SET status = 'Disabled' WHERE id = $1", [id]);

  it('serves a cached key until the entry is older than the bound, then reads it again (with its secret)', async () => {
    const keyUser = await newKeyUser();
    let maxAgeMs = 60_000;
    const directory = new CredentialDirectory(server.kms.deps, new InvalidatingLru<Credential>(10, { maxAgeMs: () => maxAgeMs }));
    expect((await directory.lookup(keyUser.accessKeyId)).accessKey.status).toBe('Enabled');
    await disableBehindTheCachesBack(keyUser.accessKeyId);
    expect((await directory.lookup(keyUser.accessKeyId)).accessKey.status).toBe('Enabled');
    maxAgeMs = 0;
    await waitFor('the entry to age', async () => (await directory.lookup(keyUser.accessKeyId)).accessKey.status === 'Disabled', 1_000, 5);
    const { accessKey, secret } = await directory.lookup(keyUser.accessKeyId);
    // Disabled keys come back with their secret: the signature is checked before the status.
    expect([accessKey.status, secret]).toEqual(['Disabled', keyUser.accessKeySecret]);
  });

  it('an invalidation drops the cached entry at once', async () => {
    const keyUser = await newKeyUser();
    const cache = new InvalidatingLru<Credential>(10, { maxAgeMs: () => 600_000 });
    const directory = new CredentialDirectory(server.kms.deps, cache);
    await directory.lookup(keyUser.accessKeyId);
    await disableBehindTheCachesBack(keyUser.accessKeyId);
    cache.invalidate(keyUser.accessKeyId);
    expect((await directory.lookup(keyUser.accessKeyId)).accessKey.status).toBe('Disabled');
  });
});
