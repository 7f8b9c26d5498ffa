import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CredentialDirectory, createAccessKey } from '../../src/services/access.js';
import { systemCaller } from '../../src/services/context.js';
import { setAccessKeyStatus } from '../../src/store/access-keys.js';
import { openApiClient, sdkError } from '../helpers/sdk.js';
import { type Credentials, type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 13, access keys: the signature is checked before the key's status (without the
 * secret nobody learns whether a key is disabled), and how long a process keeps trusting a
 * cached key is KMS_ACCESS_KEY_CACHE_TTL_MS. The key is disabled in the database directly,
 * as another process would, so no invalidation reaches this server.
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

describe('the credential cache honours KMS_ACCESS_KEY_CACHE_TTL_MS', () => {
  it('within the TTL the cached status is used; once it has passed the key is read again', async () => {
    const keyUser = await newKeyUser();
    let now = Date.parse('2026-01-01T00:00:00Z');
    const clock = { now: () => new Date(now) };
    const deps = { ...server.kms.deps, clock, config: { ...server.kms.deps.config, accessKeyCacheTtlMs: 60_000 } };
    const directory = new CredentialDirectory(deps);
    expect((await directory.lookup(keyUser.accessKeyId)).accessKey.status).toBe('Enabled');
    await setAccessKeyStatus(server.kms.deps.db, keyUser.accessKeyId, 'Disabled');
    now += 59_999;
    expect((await directory.lookup(keyUser.accessKeyId)).accessKey.status).toBe('Enabled');
    now += 1;
    const { accessKey, secret } = await directory.lookup(keyUser.accessKeyId);
    // Disabled keys come back with their secret: the signature is checked before the status.
    expect([accessKey.status, secret]).toEqual(['Disabled', keyUser.accessKeySecret]);
  });

  it('invalidate drops the cached entry at once', async () => {
    const keyUser = await newKeyUser();
    const directory = new CredentialDirectory({ ...server.kms.deps, config: { ...server.kms.deps.config, accessKeyCacheTtlMs: 600_000 } });
    await directory.lookup(keyUser.accessKeyId);
    await setAccessKeyStatus(server.kms.deps.db, keyUser.accessKeyId, 'Disabled');
    directory.invalidate(keyUser.accessKeyId);
    expect((await directory.lookup(keyUser.accessKeyId)).accessKey.status).toBe('Disabled');
  });
});
