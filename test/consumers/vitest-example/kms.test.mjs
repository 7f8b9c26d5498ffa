// A user's vitest suite with a throwaway hsm-kms (docs/testing.md). Each describe block starts
// its own rig and stops it: two starts and two stops in one test process.
import { createRequire } from 'node:module';
import { startTestKms } from 'hsm-kms/testing';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

// The SDK is a CommonJS package: required as it ships, the same under every test runner.
const KMS = createRequire(import.meta.url)('@alicloud/kms20160120');

const seed = {
  keys: [{ id: 'key-example0000000000000001', tier: 'HSM', aliases: ['alias/example'], tags: { team: 'example' } }],
};

function client(rig) {
  return new KMS.default({
    endpoint: rig.endpoint,
    protocol: 'http',
    regionId: rig.regionId,
    accessKeyId: rig.accessKeyId,
    accessKeySecret: rig.accessKeySecret,
  });
}

describe('with a seeded key', () => {
  let rig;
  beforeAll(async () => {
    rig = await startTestKms({ seed });
  });
  afterAll(() => rig?.stop());

  test('encrypts and decrypts through the alias the seed declared', async () => {
    const kms = client(rig);
    const { ciphertextBlob } = await kms.encrypt(new KMS.EncryptRequest({ keyId: 'alias/example', plaintext: 'hello from vitest' }));
    const { keyId, plaintext } = await kms.decrypt(new KMS.DecryptRequest({ ciphertextBlob }));
    expect(keyId).toBe('key-example0000000000000001');
    expect(plaintext).toBe('hello from vitest');
    const { keyMetadata } = await kms.describeKey(new KMS.DescribeKeyRequest({ keyId: 'alias/example' }));
    expect(keyMetadata.protectionLevel).toBe('HSM');
  });
});

describe('a second rig in the same process', () => {
  let rig;
  beforeAll(async () => {
    rig = await startTestKms();
  });
  afterAll(() => rig?.stop());

  test('starts from nothing: no alias of the first rig, and a new key works', async () => {
    const kms = client(rig);
    await expect(kms.describeKey(new KMS.DescribeKeyRequest({ keyId: 'alias/example' }))).rejects.toThrow(/AliasNotFound/);
    const { keyMetadata } = await kms.createKey(new KMS.CreateKeyRequest({ keySpec: 'EC_P256', keyUsage: 'SIGN/VERIFY' }));
    expect(keyMetadata.keyState).toBe('Enabled');
  });
});
