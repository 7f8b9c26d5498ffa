import { createDecipheriv } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSignedRequest } from '../../src/cli/rpc-client.js';
import { findObjects } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import * as m from '../../src/hsm/pkcs11/mechanisms.js';
import { KMS, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';
import { withTokenSession } from '../helpers/token-session.js';

/**
 * Issue 2's slice, through the real SDKs: CreateKey → DescribeKey → Encrypt → Decrypt on both
 * tiers and both signature schemes, signature failures, the token object's attributes, /health
 * and a restart on the same state.
 */
let server: TestServer;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server?.stop();
});

describe('@alicloud/kms20160120@1.2.0 (HMAC-SHA1)', () => {
  it('creates a default key, describes it, and round-trips Encrypt/Decrypt', async () => {
    const client = legacyClient(server.endpoint, server.admin);
    const created = await client.createKey(new KMS.CreateKeyRequest({ description: 'skeleton' }));
    expect(created.keyMetadata.keyId).toMatch(/^key-/);
    expect(created.keyMetadata.keyState).toBe('Enabled');
    expect(created.keyMetadata.protectionLevel).toBe('SOFTWARE');

    const described = await client.describeKey(new KMS.DescribeKeyRequest({ keyId: created.keyMetadata.keyId }));
    expect(described.keyMetadata.description).toBe('skeleton');
    expect(described.keyMetadata.primaryKeyVersion).toMatch(/^[0-9a-f-]{36}$/);

    const encrypted = await client.encrypt(
      new KMS.EncryptRequest({ keyId: created.keyMetadata.keyId, plaintext: 'aGVsbG8gd29ybGQ=', encryptionContext: JSON.stringify({ app: 'x' }) }),
    );
    expect(Buffer.from(encrypted.ciphertextBlob, 'base64').subarray(0, 36).toString()).toBe(encrypted.keyVersionId);
    const decrypted = await client.decrypt(
      new KMS.DecryptRequest({ ciphertextBlob: encrypted.ciphertextBlob, encryptionContext: JSON.stringify({ app: 'x' }) }),
    );
    expect(decrypted.plaintext).toBe('aGVsbG8gd29ybGQ=');
    expect(decrypted.keyId).toBe(created.keyMetadata.keyId);
  });

  it('answers an unknown key with Forbidden.KeyNotFound and a missing parameter with MissingParameter', async () => {
    const client = legacyClient(server.endpoint, server.admin);
    const notFound = await sdkError(() => client.describeKey(new KMS.DescribeKeyRequest({ keyId: 'key-doesnotexist' })));
    expect(notFound.code).toBe('Forbidden.KeyNotFound');
    expect(notFound.data.HttpStatus).toBe(404);
    const missing = await sdkError(() => client.describeKey(new KMS.DescribeKeyRequest({})));
    expect(missing.code).toBe('MissingParameter');
    expect(missing.data.Message).toContain('KeyId');
  });

  it('refuses a wrong secret with SignatureDoesNotMatch', async () => {
    const client = legacyClient(server.endpoint, { ...server.admin, accessKeySecret: 'not-the-secret' });
    const error = await sdkError(() => client.describeKey(new KMS.DescribeKeyRequest({ keyId: 'key-x' })));
    expect(error.code).toBe('SignatureDoesNotMatch');
  });

  it('refuses an unknown access key id', async () => {
    const client = legacyClient(server.endpoint, { accessKeyId: 'LTAInobody', accessKeySecret: 'x' });
    const error = await sdkError(() => client.describeKey(new KMS.DescribeKeyRequest({ keyId: 'key-x' })));
    expect(error.code).toBe('InvalidAccessKeyId.NotFound');
  });
});

describe('@alicloud/openapi-client@0.4.15 callApi (ACS3-HMAC-SHA256)', () => {
  it('creates an HSM key in the HSM instance and round-trips Encrypt/Decrypt', async () => {
    const call = openApiClient(server.endpoint, server.admin);
    const created = await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId, KeySpec: 'Aliyun_AES_256' });
    expect(created.KeyMetadata.ProtectionLevel).toBe('HSM');
    expect(created.KeyMetadata.DKMSInstanceId).toBe(server.hsmInstanceId);
    const keyId = created.KeyMetadata.KeyId as string;

    const described = await call('DescribeKey', { KeyId: keyId });
    expect(described.KeyMetadata.KeyState).toBe('Enabled');
    expect(described.KeyMetadata.DeletionProtection).toBe('Disabled');

    const context = { tenant: 'acme', purpose: 'test', zone: 'a' };
    const encrypted = await call('Encrypt', { KeyId: keyId, Plaintext: 'secret data', EncryptionContext: JSON.stringify(context) });
    // Same context, members in another order: the AAD is over sorted keys.
    const reordered = JSON.stringify({ zone: 'a', purpose: 'test', tenant: 'acme' });
    const decrypted = await call('Decrypt', { CiphertextBlob: encrypted.CiphertextBlob, EncryptionContext: reordered });
    expect(decrypted.Plaintext).toBe('secret data');
    expect(decrypted.KeyVersionId).toBe(encrypted.KeyVersionId);

    const wrongContext = await sdkError(() =>
      call('Decrypt', { CiphertextBlob: encrypted.CiphertextBlob, EncryptionContext: JSON.stringify({ ...context, zone: 'b' }) }),
    );
    expect(wrongContext.code).toBe('InvalidCiphertext');
    expect(wrongContext.statusCode).toBe(400);
    const noContext = await sdkError(() => call('Decrypt', { CiphertextBlob: encrypted.CiphertextBlob }));
    expect(noContext.code).toBe('InvalidCiphertext');
  });

  it('works with HMAC-SHA1 through callApi too (signatureAlgorithm v2)', async () => {
    const call = openApiClient(server.endpoint, server.admin, { signatureAlgorithm: 'v2' });
    const created = await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId });
    const encrypted = await call('Encrypt', { KeyId: created.KeyMetadata.KeyId, Plaintext: 'v2' });
    expect((await call('Decrypt', { CiphertextBlob: encrypted.CiphertextBlob })).Plaintext).toBe('v2');
  });

  it('refuses a wrong secret with SignatureDoesNotMatch (400)', async () => {
    const call = openApiClient(server.endpoint, { ...server.admin, accessKeySecret: 'wrong' });
    const error = await sdkError(() => call('DescribeKey', { KeyId: 'key-x' }));
    expect(error.code).toBe('SignatureDoesNotMatch');
    expect(error.statusCode).toBe(400);
  });

  it('lists and gets instances', async () => {
    const call = openApiClient(server.endpoint, server.admin);
    const list = await call('ListKmsInstances', {});
    const ids = (list.KmsInstances.KmsInstance as Array<{ KmsInstanceId: string }>).map((i) => i.KmsInstanceId);
    expect(ids).toEqual(expect.arrayContaining([server.hsmInstanceId, server.softwareInstanceId]));
    const got = await call('GetKmsInstance', { KmsInstanceId: server.hsmInstanceId });
    expect(got.KmsInstance.InstanceId).toBe(server.hsmInstanceId);
    expect(got.KmsInstance.KeyNum).toBe(200);
  });
});

describe('request freshness', () => {
  const send = async (request: ReturnType<typeof buildSignedRequest>) => {
    const response = await fetch(request.url, { method: 'POST', headers: request.headers });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const signed = (options: { now?: Date; nonce?: string } = {}) =>
    buildSignedRequest({
      endpoint: `http://${server.endpoint}`,
      accessKeyId: server.admin.accessKeyId,
      accessKeySecret: server.admin.accessKeySecret,
      action: 'ListKmsInstances',
      params: {},
      ...options,
    });

  it('refuses a timestamp 16 minutes old with IllegalTimestamp', async () => {
    const { status, body } = await send(signed({ now: new Date(Date.now() - 16 * 60_000) }));
    expect(status).toBe(400);
    expect(body.Code).toBe('IllegalTimestamp');
  });

  it('refuses a replayed nonce with SignatureNonceUsed', async () => {
    const request = signed();
    expect((await send(request)).status).toBe(200);
    const replay = await send(request);
    expect(replay.status).toBe(400);
    expect(replay.body.Code).toBe('SignatureNonceUsed');
  });

  it('accepts headers larger than Node’s 16 KiB default (maxHeaderSize ≥ 64 KiB)', async () => {
    const call = openApiClient(server.endpoint, server.admin);
    const created = await call('CreateKey', {});
    const plaintext = 'p'.repeat(6000);
    const context = JSON.stringify({ big: 'c'.repeat(7000) });
    const encrypted = await call('Encrypt', { KeyId: created.KeyMetadata.KeyId, Plaintext: plaintext, EncryptionContext: context });
    expect((await call('Decrypt', { CiphertextBlob: encrypted.CiphertextBlob, EncryptionContext: context })).Plaintext).toBe(plaintext);
  });
});

describe('bad requests get Alibaba-style JSON errors, never a 500', () => {
  it('an unknown action is InvalidAction.NotFound (404)', async () => {
    const call = openApiClient(server.endpoint, server.admin);
    const error = await sdkError(() => call('MakeCoffee', {}));
    expect(error.code).toBe('InvalidAction.NotFound');
    expect(error.statusCode).toBe(404);
  });

  it('an unsigned request names what is missing; another method is UnsupportedHTTPMethod; another path is 404', async () => {
    const unsigned = await fetch(`http://${server.endpoint}/?Action=DescribeKey&KeyId=x`, { method: 'POST' });
    expect(unsigned.status).toBe(400);
    expect(await unsigned.json()).toMatchObject({ Code: 'MissingParameter', Message: expect.stringContaining('AccessKeyId') });
    const noSignature = await fetch(`http://${server.endpoint}/?Action=DescribeKey&KeyId=x&AccessKeyId=${server.admin.accessKeyId}`, { method: 'POST' });
    expect(noSignature.status).toBe(400);
    expect(((await noSignature.json()) as { Code: string }).Code).toBe('IncompleteSignature');
    const put = await fetch(`http://${server.endpoint}/`, { method: 'PUT' });
    expect(put.status).toBe(403);
    expect(((await put.json()) as { Code: string }).Code).toBe('UnsupportedHTTPMethod');
    const elsewhere = await fetch(`http://${server.endpoint}/admin`);
    expect(elsewhere.status).toBe(404);
    expect(((await elsewhere.json()) as { RequestId: string }).RequestId).toBeDefined();
  });

  it('malformed parameters are InvalidParameter (400): a non-JSON context, a bad blob, an empty plaintext', async () => {
    const call = openApiClient(server.endpoint, server.admin);
    const key = await call('CreateKey', {});
    const keyId = key.KeyMetadata.KeyId as string;
    const badContext = await sdkError(() => call('Encrypt', { KeyId: keyId, Plaintext: 'x', EncryptionContext: '[1,2]' }));
    expect([badContext.code, badContext.statusCode]).toEqual(['InvalidParameter', 400]);
    const badBlob = await sdkError(() => call('Decrypt', { CiphertextBlob: 'bm90IGEgYmxvYg==' }));
    expect([badBlob.code, badBlob.statusCode]).toEqual(['InvalidCiphertext', 400]);
    const empty = await sdkError(() => call('Encrypt', { KeyId: keyId, Plaintext: '' }));
    expect(empty.statusCode).toBe(400);
    const tooLong = await sdkError(() => call('Encrypt', { KeyId: keyId, Plaintext: 'x'.repeat(6145) }));
    expect([tooLong.code, tooLong.statusCode]).toEqual(['InvalidParameter', 400]);
  });
});

describe('the HSM key object', () => {
  it('is sensitive and non-extractable, and neither C_GetAttributeValue(CKA_VALUE) nor C_WrapKey can read it', async () => {
    const call = openApiClient(server.endpoint, server.admin);
    const created = await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId });
    const versionId = created.KeyMetadata.PrimaryKeyVersion as string;

    await withTokenSession(server, (p11, session) => {
      const [key] = findObjects(p11, session, m.secretKeyById(versionId));
      expect(key).toBeDefined();
      const attrs = p11.C_GetAttributeValue(session, key!, [
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_TOKEN },
        { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
      ]);
      const flag = (i: number) => (attrs[i]?.value as Buffer)[0] === 1;
      expect(flag(0)).toBe(true); // CKA_SENSITIVE
      expect(flag(1)).toBe(false); // CKA_EXTRACTABLE
      expect(flag(2)).toBe(true); // CKA_TOKEN
      expect(flag(3)).toBe(true); // CKA_NEVER_EXTRACTABLE

      expect(() => p11.C_GetAttributeValue(session, key!, [{ type: pkcs11js.CKA_VALUE }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
      const wrapper = p11.C_GenerateKey(session, m.aesKeyGen, m.aesKeyTemplate({ token: false, valueLength: 32, wrap: true }));
      expect(() => p11.C_WrapKey(session, m.aesKeyWrapPad, wrapper, key!, Buffer.alloc(64))).toThrow(/CKR_KEY_UNEXTRACTABLE/);
    });
  });

  it('the SOFTWARE tier really encrypts with AES-256-GCM (a version sealed under the root key)', async () => {
    const call = openApiClient(server.endpoint, server.admin);
    const created = await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId });
    const encrypted = await call('Encrypt', { KeyId: created.KeyMetadata.KeyId, Plaintext: 'tier' });
    const { rows } = await server.kms.deps.db.query<{ sealed_material: Buffer }>('SELECT sealed_material FROM key_versions WHERE id = $1', [
      encrypted.KeyVersionId,
    ]);
    // The stored material is sealed (iv ‖ 32-byte ciphertext ‖ tag), never the 32 raw bytes.
    expect(rows[0]?.sealed_material.length).toBe(12 + 32 + 16);
    const material = await server.kms.deps.hsm.unsealWithRootKey(rows[0]!.sealed_material, Buffer.from(encrypted.KeyVersionId));
    const blob = Buffer.from(encrypted.CiphertextBlob, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', material, blob.subarray(36, 48));
    decipher.setAuthTag(blob.subarray(blob.length - 16));
    expect(Buffer.concat([decipher.update(blob.subarray(48, blob.length - 16)), decipher.final()]).toString()).toBe('tier');
  });
});

describe('/health', () => {
  it('reports the probed capabilities; OAEP-SHA256 unwrap is unsupported on SoftHSM2 2.6.1', async () => {
    const response = await fetch(`http://${server.endpoint}/health`);
    expect(response.status).toBe(200);
    const health = (await response.json()) as { status: string; hsm: { capabilities: Record<string, boolean> } };
    expect(health.status).toBe('ok');
    expect(health.hsm.capabilities).toMatchObject({
      aesGcm: true,
      oaepSha1Unwrap: true,
      oaepSha256Unwrap: false,
      pkcs1v15Unwrap: true,
      rsaX509: true,
      aesKeyWrapPad: true,
    });
  });
});

describe('restart', () => {
  it('keeps keys usable: a new server on the same database and token decrypts old ciphertexts', async () => {
    const first = await startServer();
    const call = openApiClient(first.endpoint, first.admin);
    const hsmKey = await call('CreateKey', { DKMSInstanceId: first.hsmInstanceId });
    const swKey = await call('CreateKey', { DKMSInstanceId: first.softwareInstanceId });
    const a = await call('Encrypt', { KeyId: hsmKey.KeyMetadata.KeyId, Plaintext: 'before restart (hsm)' });
    const b = await call('Encrypt', { KeyId: swKey.KeyMetadata.KeyId, Plaintext: 'before restart (sw)' });
    await first.stop();

    const second = await startServer({ databaseUrl: first.databaseUrl });
    try {
      const again = openApiClient(second.endpoint, second.admin);
      expect((await again('Decrypt', { CiphertextBlob: a.CiphertextBlob })).Plaintext).toBe('before restart (hsm)');
      expect((await again('Decrypt', { CiphertextBlob: b.CiphertextBlob })).Plaintext).toBe('before restart (sw)');
    } finally {
      await second.stop();
    }
  });
});

describe('logs', () => {
  it('never contain plaintexts, secrets or PINs', () => {
    const all = server.logs.join('\n');
    expect(all.length).toBeGreaterThan(0);
    for (const secret of ['secret data', 'aGVsbG8gd29ybGQ=', server.admin.accessKeySecret, server.token.userPin, server.token.soPin]) {
      expect(all).not.toContain(secret);
    }
  });
});
