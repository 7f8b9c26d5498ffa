import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reserveIdempotencyKey } from '../../src/store/idempotency-keys.js';
import { waitFor } from '../helpers/jobs.js';
import { encodeQuery, send, v1Params } from '../helpers/raw-rpc.js';
import { openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 19, item 6: a CreateKey whose answer is lost after its commit used to be created again by
 * the client's retry. With a client token (ClientToken, or the x-kms-idempotency-key header) the
 * retry answers the same key.
 */
let server: TestServer;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server?.stop();
});

const createKeyRaw = (params: Record<string, string>, headers: Record<string, string> = {}) =>
  send(server.endpoint, { path: `/?${encodeQuery(v1Params('CreateKey', params, server.admin))}`, headers });

async function keysDescribed(description: string): Promise<string[]> {
  const { rows } = await server.kms.deps.db.query<{ id: string }>('SELECT id FROM keys WHERE description = $1 ORDER BY id', [description]);
  return rows.map((r) => r.id);
}

async function versionsUsed(instanceId: string): Promise<number> {
  const { rows } = await server.kms.deps.db.query<{ n: string }>('SELECT count(*) AS n FROM key_versions WHERE instance_id = $1', [instanceId]);
  return Number(rows[0]!.n);
}

describe('CreateKey with a client token', () => {
  it('raw RPC, x-kms-idempotency-key: a retry answers the same KeyId; other parameters under that token are refused', async () => {
    const token = randomUUID();
    const description = `idempotent raw ${token}`;
    const params = { DKMSInstanceId: server.hsmInstanceId, Description: description };
    const before = await versionsUsed(server.hsmInstanceId);
    const first = await createKeyRaw(params, { 'x-kms-idempotency-key': token });
    const again = await createKeyRaw(params, { 'x-kms-idempotency-key': token });
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    const keyId = (first.body.KeyMetadata as { KeyId: string }).KeyId;
    expect((again.body.KeyMetadata as { KeyId: string }).KeyId).toBe(keyId);
    expect(await keysDescribed(description)).toEqual([keyId]);
    expect(await versionsUsed(server.hsmInstanceId)).toBe(before + 1);

    const other = await createKeyRaw({ ...params, Description: `${description} changed` }, { 'x-kms-idempotency-key': token });
    expect(other.status).toBe(400);
    expect(other.body.Code).toBe('IdempotentParameterMismatch');
    // Without a token every call creates.
    await createKeyRaw(params);
    expect(await keysDescribed(description)).toHaveLength(2);
  });

  it('an answer lost after its commit: the retry answers the committed key, and no second key is made', async () => {
    const token = randomUUID();
    const description = `idempotent lost ${token}`;
    const params = { DKMSInstanceId: server.hsmInstanceId, Description: description };
    // The request is written whole, then the connection is dropped: the client never sees the answer.
    const query = encodeQuery(v1Params('CreateKey', params, server.admin));
    const [host, port] = server.endpoint.split(':');
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(Number(port), host, () => {
        socket.write(`POST /?${query} HTTP/1.1\r\nHost: ${server.endpoint}\r\nx-kms-idempotency-key: ${token}\r\nContent-Length: 0\r\n\r\n`, () => {
          socket.destroy();
          resolve();
        });
      });
      socket.on('error', reject);
    });
    // The server goes on and commits: the client only saw its connection reset.
    await waitFor('the dropped CreateKey to commit', async () => (await keysDescribed(description)).length > 0);
    const [committed] = await keysDescribed(description);
    const retry = await createKeyRaw(params, { 'x-kms-idempotency-key': token });
    expect(retry.status).toBe(200);
    const keyId = (retry.body.KeyMetadata as { KeyId: string }).KeyId;
    expect(keyId).toBe(committed);
    expect(await keysDescribed(description)).toEqual([keyId]);
  });

  it('eight retries at once under one token (both tiers): one key, every answer names it', async () => {
    for (const instanceId of [server.hsmInstanceId, server.softwareInstanceId]) {
      const token = randomUUID();
      const description = `idempotent race ${token}`;
      const answers = await Promise.all(Array.from({ length: 8 }, () => createKeyRaw({ DKMSInstanceId: instanceId, Description: description }, { 'x-kms-idempotency-key': token })));
      const ids = new Set(answers.map((a) => (a.body.KeyMetadata as { KeyId?: string } | undefined)?.KeyId ?? `${a.status} ${String(a.body.Code)}`));
      expect([...ids]).toEqual(await keysDescribed(description));
      expect(ids.size).toBe(1);
    }
  });

  it('SDK callApi with ClientToken: the same KeyId, and a clear error for a changed request', async () => {
    const call = openApiClient(server.endpoint, server.admin);
    const token = randomUUID();
    const description = `idempotent sdk ${token}`;
    const first = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, Description: description, ClientToken: token })).KeyMetadata;
    const again = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, Description: description, ClientToken: token })).KeyMetadata;
    expect(again.KeyId).toBe(first.KeyId);
    expect(again.Arn).toBe(first.Arn);
    expect(await keysDescribed(description)).toEqual([first.KeyId]);
    // The key works as any other.
    const blob = (await call('Encrypt', { KeyId: first.KeyId, Plaintext: 'once' })).CiphertextBlob as string;
    expect((await call('Decrypt', { CiphertextBlob: blob })).Plaintext).toBe('once');

    const mismatch = await sdkError(() => call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, Description: description, KeySpec: 'Aliyun_AES_128', ClientToken: token }));
    expect(mismatch).toMatchObject({ code: 'IdempotentParameterMismatch', statusCode: 400 });
    // Another token, another key.
    const second = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, Description: description, ClientToken: randomUUID() })).KeyMetadata;
    expect(second.KeyId).not.toBe(first.KeyId);
  });

  it('refuses a malformed token, and a header and a parameter that differ', async () => {
    const params = { DKMSInstanceId: server.softwareInstanceId, Description: 'bad token' };
    const spaced = await createKeyRaw({ ...params, ClientToken: 'has a space' });
    expect(spaced).toMatchObject({ status: 400, body: { Code: 'InvalidParameter' } });
    expect(spaced.body.Message).toContain('ClientToken');
    const tooLong = await createKeyRaw(params, { 'x-kms-idempotency-key': 'x'.repeat(65) });
    expect(tooLong).toMatchObject({ status: 400, body: { Code: 'InvalidParameter' } });
    const differ = await createKeyRaw({ ...params, ClientToken: 'one' }, { 'x-kms-idempotency-key': 'two' });
    expect(differ).toMatchObject({ status: 400, body: { Code: 'InvalidParameter' } });
    expect(await keysDescribed('bad token')).toEqual([]);
  });

  it('a reservation counts for 24 hours: after that the token is free again', async () => {
    const entry = { action: 'CreateKey', clientToken: randomUUID(), paramsSha256: Buffer.alloc(32, 1), resourceId: 'key-a' };
    const t0 = new Date('2030-01-01T00:00:00Z');
    const at = (hours: number) => new Date(t0.getTime() + hours * 3600_000);
    const expiredBefore = (now: Date) => new Date(now.getTime() - 24 * 3600_000);
    expect(await reserveIdempotencyKey(server.kms.deps.db, { ...entry, now: t0, expiredBefore: expiredBefore(t0) })).toMatchObject({ fresh: true, resourceId: 'key-a' });
    expect(await reserveIdempotencyKey(server.kms.deps.db, { ...entry, resourceId: 'key-b', now: at(23), expiredBefore: expiredBefore(at(23)) })).toMatchObject({ fresh: false, resourceId: 'key-a' });
    expect(await reserveIdempotencyKey(server.kms.deps.db, { ...entry, resourceId: 'key-c', now: at(25), expiredBefore: expiredBefore(at(25)) })).toMatchObject({ fresh: true, resourceId: 'key-c' });
  });
});
