import { execFileSync } from 'node:child_process';
import { constants, createCipheriv, createDecipheriv, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { KMS, type CallApi, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 15, data keys through the real SDKs on both tiers: envelope encryption
 * (GenerateDataKey → AES-256-GCM with the key → Decrypt of the blob gives the key back),
 * the NumberOfBytes/KeySpec rules, exports under the caller's RSA key, and DryRun.
 */
let server: TestServer;
let call: CallApi;
let legacy: ReturnType<typeof legacyClient>;
const keys: Record<'HSM' | 'SOFTWARE', string> = { HSM: '', SOFTWARE: '' };

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  legacy = legacyClient(server.endpoint, server.admin);
  keys.HSM = (await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId })).KeyMetadata.KeyId;
  keys.SOFTWARE = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId;
});

afterAll(async () => {
  await server?.stop();
});

const TIERS = ['HSM', 'SOFTWARE'] as const;
const context = JSON.stringify({ tenant: 'acme', purpose: 'orders' });

function sealLocally(dataKey: Buffer, message: Buffer): { iv: Buffer; body: Buffer; tag: Buffer } {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', dataKey, iv);
  const body = Buffer.concat([cipher.update(message), cipher.final()]);
  return { iv, body, tag: cipher.getAuthTag() };
}

function openLocally(dataKey: Buffer, sealed: { iv: Buffer; body: Buffer; tag: Buffer }): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', dataKey, sealed.iv);
  decipher.setAuthTag(sealed.tag);
  return Buffer.concat([decipher.update(sealed.body), decipher.final()]);
}

describe.each(TIERS)('envelope encryption on the %s tier (SDK 1.2.0)', (tier) => {
  it('GenerateDataKey → AES-256-GCM locally → Decrypt of the CiphertextBlob returns the same key (its base64 text)', async () => {
    const generated = await legacy.generateDataKey(new KMS.GenerateDataKeyRequest({ keyId: keys[tier], encryptionContext: context }));
    expect(generated.keyId).toBe(keys[tier]);
    expect(generated.keyVersionId).toMatch(/^[0-9a-f-]{36}$/);
    const dataKey = Buffer.from(generated.plaintext, 'base64');
    expect(dataKey.length).toBe(32);
    expect(dataKey.toString('base64')).toBe(generated.plaintext);

    const message = Buffer.from(`order #42 on ${tier}`);
    const sealed = sealLocally(dataKey, message);

    const decrypted = await legacy.decrypt(new KMS.DecryptRequest({ ciphertextBlob: generated.ciphertextBlob, encryptionContext: context }));
    expect(decrypted.plaintext).toBe(generated.plaintext);
    expect(decrypted.keyVersionId).toBe(generated.keyVersionId);
    expect(openLocally(Buffer.from(decrypted.plaintext, 'base64'), sealed)).toEqual(message);

    // The blob is bound to its context like any Encrypt blob.
    const wrong = await sdkError(() => legacy.decrypt(new KMS.DecryptRequest({ ciphertextBlob: generated.ciphertextBlob, encryptionContext: '{"tenant":"other"}' })));
    expect(wrong.code).toBe('InvalidCiphertext');
  });

  it('GenerateDataKeyWithoutPlaintext gives no Plaintext; Decrypt gives a 32-byte key', async () => {
    const generated = await legacy.generateDataKeyWithoutPlaintext(
      new KMS.GenerateDataKeyWithoutPlaintextRequest({ keyId: keys[tier], encryptionContext: context }),
    );
    expect((generated as unknown as Record<string, unknown>).plaintext).toBeUndefined();
    const raw = await call('GenerateDataKeyWithoutPlaintext', { KeyId: keys[tier] });
    expect(Object.keys(raw).sort()).toEqual(['CiphertextBlob', 'KeyId', 'KeyVersionId', 'RequestId']);
    const decrypted = await legacy.decrypt(new KMS.DecryptRequest({ ciphertextBlob: generated.ciphertextBlob, encryptionContext: context }));
    expect(Buffer.from(decrypted.plaintext, 'base64').length).toBe(32);
  });

  it('data keys come from the token RNG (C_GenerateRandom through Hsm.randomBytes), one draw per key', async () => {
    const spy = vi.spyOn(server.kms.deps.hsm, 'randomBytes');
    try {
      await call('GenerateDataKey', { KeyId: keys[tier], NumberOfBytes: 48 });
      expect(spy.mock.calls).toEqual([[48]]);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('NumberOfBytes and KeySpec (§3.4: NumberOfBytes 1–1024 wins over KeySpec; default 32)', () => {
  const lengthOf = async (query: Record<string, unknown>) =>
    Buffer.from((await call('GenerateDataKey', { KeyId: keys.HSM, ...query })).Plaintext as string, 'base64').length;

  it('sizes', async () => {
    expect(await lengthOf({})).toBe(32);
    expect(await lengthOf({ KeySpec: 'AES_256' })).toBe(32);
    expect(await lengthOf({ KeySpec: 'AES_128' })).toBe(16);
    expect(await lengthOf({ NumberOfBytes: 1 })).toBe(1);
    expect(await lengthOf({ NumberOfBytes: 1024 })).toBe(1024);
    expect(await lengthOf({ KeySpec: 'AES_128', NumberOfBytes: 64 })).toBe(64);
    expect(await lengthOf({ KeySpec: 'AES_256', NumberOfBytes: 7 })).toBe(7);
  });

  it.each([
    ['NumberOfBytes', '0'],
    ['NumberOfBytes', '1025'],
    ['NumberOfBytes', 'junk'],
    ['NumberOfBytes', '-1'],
    ['NumberOfBytes', '1.5'],
    ['KeySpec', 'AES_192'],
    ['KeySpec', 'aes_256'],
  ])('%s=%s → 400 InvalidParameter, on both data-key actions', async (name, value) => {
    for (const action of ['GenerateDataKey', 'GenerateDataKeyWithoutPlaintext']) {
      const e = await sdkError(() => call(action, { KeyId: keys.SOFTWARE, [name]: value }));
      expect({ code: e.code, status: e.statusCode }).toEqual({ code: 'InvalidParameter', status: 400 });
      expect(e.message).toContain(name);
    }
  });

  it('a missing KeyId is MissingParameter; an unknown key 404', async () => {
    expect((await sdkError(() => call('GenerateDataKey', {}))).code).toBe('MissingParameter');
    const e = await sdkError(() => call('GenerateDataKey', { KeyId: 'key-hzznothere0000000000' }));
    expect({ code: e.code, status: e.statusCode }).toEqual({ code: 'Forbidden.KeyNotFound', status: 404 });
  });

  it('the state rules of Encrypt apply (§5.1): a Disabled key gets Rejected.Disabled 409 on every data-key action', async () => {
    const keyId = (await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId })).KeyMetadata.KeyId as string;
    const blob = (await call('GenerateDataKey', { KeyId: keyId })).CiphertextBlob as string;
    await call('DisableKey', { KeyId: keyId });
    const { publicKey } = rsaPair();
    const cases: Array<[string, Record<string, unknown>]> = [
      ['GenerateDataKey', { KeyId: keyId }],
      ['GenerateDataKeyWithoutPlaintext', { KeyId: keyId }],
      ['GenerateAndExportDataKey', { KeyId: keyId, PublicKeyBlob: publicKey, WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_2048' }],
      ['ExportDataKey', { CiphertextBlob: blob, PublicKeyBlob: publicKey, WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_2048' }],
    ];
    for (const [action, query] of cases) {
      const e = await sdkError(() => call(action, query));
      expect({ action, code: e.code, status: e.statusCode }).toEqual({ action, code: 'Rejected.Disabled', status: 409 });
    }
  });

  it('the usage table applies (domain/key.ts): an asymmetric key makes no data key and takes no ReEncrypt → 400 Rejected.UnsupportedOperation', async () => {
    for (const KeyUsage of ['ENCRYPT/DECRYPT', 'SIGN/VERIFY']) {
      const rsa = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, KeySpec: 'RSA_2048', KeyUsage })).KeyMetadata.KeyId as string;
      const { publicKey } = rsaPair();
      const blob = (await call('Encrypt', { KeyId: keys.SOFTWARE, Plaintext: 'x' })).CiphertextBlob;
      const cases: Array<[string, Record<string, unknown>]> = [
        ['GenerateDataKey', { KeyId: rsa }],
        ['GenerateDataKeyWithoutPlaintext', { KeyId: rsa }],
        ['GenerateAndExportDataKey', { KeyId: rsa, PublicKeyBlob: publicKey, WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_2048' }],
        ['ReEncrypt', { CiphertextBlob: blob, DestinationKeyId: rsa }],
      ];
      for (const [action, query] of cases) {
        const e = await sdkError(() => call(action, query));
        expect({ action, KeyUsage, code: e.code, status: e.statusCode }).toEqual({ action, KeyUsage, code: 'Rejected.UnsupportedOperation', status: 400 });
      }
    }
  });

  it('data keys use the primary version: after a rotation the new blobs name the new version, old ones still decrypt', async () => {
    const keyId = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string;
    const before = await call('GenerateDataKey', { KeyId: keyId });
    await call('CreateKeyVersion', { KeyId: keyId });
    const primary = (await call('DescribeKey', { KeyId: keyId })).KeyMetadata.PrimaryKeyVersion as string;
    const after = await call('GenerateDataKey', { KeyId: keyId });
    expect(after.KeyVersionId).toBe(primary);
    expect(after.KeyVersionId).not.toBe(before.KeyVersionId);
    expect((await call('Decrypt', { CiphertextBlob: before.CiphertextBlob })).Plaintext).toBe(before.Plaintext);
  });
});

/** A caller's own RSA pair: the public half as the API takes it (base64 DER SPKI), the private as PEM. */
function rsaPair(bits = 2048) {
  const pair = generateKeyPairSync('rsa', { modulusLength: bits });
  return {
    publicKey: pair.publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
    privateKey: pair.privateKey,
    privatePem: pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
}

/** Unwraps with the caller's private key: node:crypto for OAEP; openssl for PKCS#1 v1.5 (Node 20 refuses it in privateDecrypt, CVE-2023-46809). */
function unwrap(pair: ReturnType<typeof rsaPair>, algorithm: string, exported: string): Buffer {
  const wrapped = Buffer.from(exported, 'base64');
  if (algorithm === 'RSAES_PKCS1_V1_5') {
    const dir = mkdtempSync(path.join(tmpdir(), 'export-'));
    writeFileSync(path.join(dir, 'key.pem'), pair.privatePem);
    writeFileSync(path.join(dir, 'in.bin'), wrapped);
    return execFileSync('openssl', ['pkeyutl', '-decrypt', '-inkey', path.join(dir, 'key.pem'), '-in', path.join(dir, 'in.bin'), '-pkeyopt', 'rsa_padding_mode:pkcs1']);
  }
  return privateDecrypt(
    { key: pair.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: algorithm === 'RSAES_OAEP_SHA_256' ? 'sha256' : 'sha1' },
    wrapped,
  );
}

describe('ExportDataKey and GenerateAndExportDataKey: the raw data key under the caller RSA public key', () => {
  const ALGORITHMS = ['RSAES_OAEP_SHA_256', 'RSAES_OAEP_SHA_1', 'RSAES_PKCS1_V1_5'] as const;

  it.each(TIERS.flatMap((tier) => ALGORITHMS.map((algorithm) => [tier, algorithm] as const)))(
    '%s key, %s: the private key yields the data key that Decrypt of the CiphertextBlob gives',
    async (tier, algorithm) => {
      const pair = rsaPair();
      const wrap = { PublicKeyBlob: pair.publicKey, WrappingAlgorithm: algorithm, WrappingKeySpec: 'RSA_2048' };
      const both = await call('GenerateAndExportDataKey', { KeyId: keys[tier], EncryptionContext: context, ...wrap });
      expect(Object.keys(both).sort()).toEqual(['CiphertextBlob', 'ExportedDataKey', 'KeyId', 'KeyVersionId', 'RequestId']);
      const fromExport = unwrap(pair, algorithm, both.ExportedDataKey as string);
      expect(fromExport.length).toBe(32);
      const decrypted = (await call('Decrypt', { CiphertextBlob: both.CiphertextBlob, EncryptionContext: context })).Plaintext as string;
      expect(fromExport.toString('base64')).toBe(decrypted);

      const generated = await call('GenerateDataKey', { KeyId: keys[tier], NumberOfBytes: 16, EncryptionContext: context });
      const exported = await call('ExportDataKey', { CiphertextBlob: generated.CiphertextBlob, EncryptionContext: context, ...wrap });
      expect(exported.KeyId).toBe(keys[tier]);
      expect(exported.KeyVersionId).toBe(generated.KeyVersionId);
      expect(unwrap(pair, algorithm, exported.ExportedDataKey as string).toString('base64')).toBe(generated.Plaintext);
    },
  );

  it('an RSA_3072 public key with WrappingKeySpec RSA_3072', async () => {
    const pair = rsaPair(3072);
    const r = await call('GenerateAndExportDataKey', { KeyId: keys.HSM, PublicKeyBlob: pair.publicKey, WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_3072' });
    const plain = (await call('Decrypt', { CiphertextBlob: r.CiphertextBlob })).Plaintext as string;
    expect(unwrap(pair, 'RSAES_OAEP_SHA_256', r.ExportedDataKey as string).toString('base64')).toBe(plain);
  });

  it('bad PublicKeyBlob, algorithm, spec or size → 400, never a 500', async () => {
    const pair = rsaPair();
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    const blob = (await call('GenerateDataKey', { KeyId: keys.HSM })).CiphertextBlob as string;
    const good = { PublicKeyBlob: pair.publicKey, WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_2048' };
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ ...good, PublicKeyBlob: 'junk!' }, 'InvalidParameter', 'PublicKeyBlob'],
      [{ ...good, PublicKeyBlob: Buffer.from('not a key').toString('base64') }, 'InvalidParameter', 'PublicKeyBlob'],
      [{ ...good, PublicKeyBlob: ec }, 'InvalidParameter', 'PublicKeyBlob'],
      [{ ...good, WrappingKeySpec: 'RSA_3072' }, 'InvalidParameter', 'PublicKeyBlob'],
      [{ ...good, WrappingKeySpec: 'EC_SM2' }, 'InvalidParameter', 'WrappingKeySpec'],
      [{ ...good, WrappingAlgorithm: 'RSAES_OAEP_SHA_512' }, 'InvalidParameter', 'WrappingAlgorithm'],
      [{ ...good, WrappingAlgorithm: undefined }, 'MissingParameter', 'WrappingAlgorithm'],
      [{ ...good, PublicKeyBlob: undefined }, 'MissingParameter', 'PublicKeyBlob'],
    ];
    for (const [query, code, field] of cases) {
      for (const [action, extra] of [
        ['GenerateAndExportDataKey', { KeyId: keys.HSM }],
        ['ExportDataKey', { CiphertextBlob: blob }],
      ] as const) {
        const e = await sdkError(() => call(action, { ...extra, ...query }));
        expect({ action, code: e.code, status: e.statusCode }).toEqual({ action, code, status: 400 });
        expect(e.message).toContain(field);
      }
    }
    // 1024 bytes do not fit OAEP-SHA256 under RSA-2048 (190 at most): refused before a key is made.
    const tooBig = await sdkError(() => call('GenerateAndExportDataKey', { KeyId: keys.HSM, NumberOfBytes: 1024, ...good }));
    expect({ code: tooBig.code, status: tooBig.statusCode }).toEqual({ code: 'InvalidParameter', status: 400 });
    expect(tooBig.message).toContain('at most 190 bytes');
    expect((await call('GenerateAndExportDataKey', { KeyId: keys.HSM, NumberOfBytes: 190, ...good })).ExportedDataKey).toBeTruthy();
  });

  it('ExportDataKey of a blob that holds no data key (Encrypt of free text), or with a wrong context, is refused', async () => {
    const pair = rsaPair();
    const wrap = { PublicKeyBlob: pair.publicKey, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' };
    const text = (await call('Encrypt', { KeyId: keys.SOFTWARE, Plaintext: 'hello, world' })).CiphertextBlob;
    const e = await sdkError(() => call('ExportDataKey', { CiphertextBlob: text, ...wrap }));
    expect({ code: e.code, status: e.statusCode }).toEqual({ code: 'InvalidParameter', status: 400 });
    expect(e.message).toContain('CiphertextBlob');
    const blob = (await call('GenerateDataKey', { KeyId: keys.SOFTWARE, EncryptionContext: context })).CiphertextBlob;
    const wrong = await sdkError(() => call('ExportDataKey', { CiphertextBlob: blob, EncryptionContext: '{"a":"b"}', ...wrap }));
    expect({ code: wrong.code, status: wrong.statusCode }).toEqual({ code: 'InvalidCiphertext', status: 400 });
  });
});

describe('DryRun (§3.4): the call always fails, DryRunOperationError when it would have succeeded', () => {
  it('Encrypt, Decrypt and the data-key actions', async () => {
    const pair = rsaPair();
    const wrap = { PublicKeyBlob: pair.publicKey, WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_2048' };
    const blob = (await call('GenerateDataKey', { KeyId: keys.HSM, EncryptionContext: context })).CiphertextBlob;
    const spy = vi.spyOn(server.kms.deps.hsm, 'randomBytes');
    try {
      const cases: Array<[string, Record<string, unknown>]> = [
        ['Encrypt', { KeyId: keys.HSM, Plaintext: 'x' }],
        ['Decrypt', { CiphertextBlob: blob, EncryptionContext: context }],
        ['GenerateDataKey', { KeyId: keys.HSM }],
        ['GenerateDataKeyWithoutPlaintext', { KeyId: keys.SOFTWARE }],
        ['GenerateAndExportDataKey', { KeyId: keys.SOFTWARE, ...wrap }],
        ['ExportDataKey', { CiphertextBlob: blob, EncryptionContext: context, ...wrap }],
      ];
      for (const [action, query] of cases) {
        const e = await sdkError(() => call(action, { ...query, DryRun: 'true' }));
        expect({ action, code: e.code, status: e.statusCode }).toEqual({ action, code: 'DryRunOperationError', status: 400 });
        expect(e.data.Plaintext).toBeUndefined();
        // DryRun=false is an ordinary call.
        await call(action, { ...query, DryRun: 'false' });
      }
      // The dry runs drew no data key (the four real data-key calls drew one each).
      expect(spy.mock.calls.length).toBe(3);
    } finally {
      spy.mockRestore();
    }
  });

  it('what would fail is ValidationError (400), with the real code in the message; a key-user cannot probe other instances', async () => {
    const blob = (await call('Encrypt', { KeyId: keys.HSM, Plaintext: 'x', EncryptionContext: context })).CiphertextBlob;
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['Decrypt', { CiphertextBlob: blob, EncryptionContext: '{"a":"b"}' }, 'InvalidCiphertext'],
      ['GenerateDataKey', { KeyId: keys.HSM, NumberOfBytes: 0 }, 'InvalidParameter'],
      ['GenerateDataKey', { KeyId: 'key-hzznothere0000000000' }, 'Forbidden.KeyNotFound'],
      ['Encrypt', { KeyId: keys.HSM }, 'MissingParameter'],
      ['Encrypt', { KeyId: keys.HSM, Plaintext: 'x', Frobnicate: '1' }, 'InvalidParameter'],
    ];
    for (const [action, query, realCode] of cases) {
      const e = await sdkError(() => call(action, { ...query, DryRun: 'true' }));
      expect({ action, code: e.code, status: e.statusCode }).toEqual({ action, code: 'ValidationError', status: 400 });
      expect(e.message).toContain(realCode);
    }
    // A key-user of the HSM instance: another instance's key and a missing key answer alike.
    const { createAccessKey } = await import('../../src/services/access.js');
    const { systemCaller } = await import('../../src/services/context.js');
    const user = await createAccessKey(server.kms.deps, { role: 'key-user', instanceIds: [server.hsmInstanceId] }, systemCaller);
    const asUser = openApiClient(server.endpoint, { accessKeyId: user.accessKeyId, accessKeySecret: user.accessKeySecret });
    const other = await sdkError(() => asUser('GenerateDataKey', { KeyId: keys.SOFTWARE, DryRun: 'true' }));
    const missing = await sdkError(() => asUser('GenerateDataKey', { KeyId: 'key-hzznothere0000000000', DryRun: 'true' }));
    expect(other.data.Message).toBe(missing.data.Message);
    expect(other.code).toBe('ValidationError');
    expect((await sdkError(() => asUser('GenerateDataKey', { KeyId: keys.HSM, DryRun: 'true' }))).code).toBe('DryRunOperationError');
  });
});
