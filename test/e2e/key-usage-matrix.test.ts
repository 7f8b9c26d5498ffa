import { constants, createHash, createPublicKey, generateKeyPairSync, publicEncrypt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allActions } from '../../src/api/actions/index.js';
import { USAGE_ACTIONS, USAGE_COLUMNS, type UsageAction, type UsageColumn, usageAllows } from '../../src/domain/key.js';
import { createKeyIn, instanceOfTier } from '../helpers/fixtures.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * The usage table (domain/key.ts) through the SDK: every action × every kind of key, on both
 * tiers. Allowed cells succeed with valid input; refused ones answer Rejected.UnsupportedOperation
 * (400); no cell answers 5xx. The table's contents are pinned cell by cell in
 * test/unit/key-usage.test.ts; this proves every action asks it.
 */
let server: TestServer;
let call: CallApi;

interface TestKey {
  keyId: string;
  versionId: string;
  /** A CiphertextBlob this key made (symmetric) or one naming its version (others). */
  blob: string;
  /** AsymmetricDecrypt input this key can open (RSA ENCRYPT/DECRYPT), else filler. */
  rsaCiphertext: string;
  signature: string;
}

const digest = createHash('sha256').update('usage matrix').digest().toString('base64');
const wrapping = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
const SPEC: Record<UsageColumn, { KeySpec: string; KeyUsage: string }> = {
  'symmetric-encrypt': { KeySpec: 'Aliyun_AES_256', KeyUsage: 'ENCRYPT/DECRYPT' },
  'asymmetric-encrypt': { KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT/DECRYPT' },
  sign: { KeySpec: 'EC_P256', KeyUsage: 'SIGN/VERIFY' },
  mac: { KeySpec: 'HMAC_SHA256', KeyUsage: 'GENERATE/VERIFY_MAC' },
};
const keys = new Map<string, TestKey>();
let symmetricDestination: TestKey;

async function makeKey(tier: 'HSM' | 'SOFTWARE', column: UsageColumn): Promise<TestKey> {
  const { keyId, versionId } = await createKeyIn(call, instanceOfTier(server, tier), SPEC[column]);
  let blob = Buffer.concat([Buffer.from(versionId), Buffer.alloc(12 + 32, 7)]).toString('base64');
  let rsaCiphertext = Buffer.alloc(256, 1).toString('base64');
  let signature = Buffer.alloc(70, 1).toString('base64');
  if (column === 'symmetric-encrypt') blob = (await call('Encrypt', { KeyId: keyId, Plaintext: 'aGVsbG8=' })).CiphertextBlob as string;
  if (column === 'asymmetric-encrypt') {
    const pem = (await call('GetPublicKey', { KeyId: keyId, KeyVersionId: versionId })).PublicKey as string;
    rsaCiphertext = publicEncrypt({ key: createPublicKey(pem), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, Buffer.from('hi')).toString('base64');
  }
  if (column === 'sign') signature = (await call('AsymmetricSign', { KeyId: keyId, KeyVersionId: versionId, Algorithm: 'ECDSA_SHA_256', Digest: digest })).Value as string;
  return { keyId, versionId, blob, rsaCiphertext, signature };
}

/** Valid parameters for `action` on key `k`, so that only its usage decides. */
function paramsFor(action: UsageAction | 'ReEncrypt (destination)', k: TestKey): Record<string, string> {
  const target = { KeyId: k.keyId, KeyVersionId: k.versionId };
  const exportParams = { PublicKeyBlob: wrapping, WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_2048' };
  switch (action) {
    case 'Encrypt':
      return { KeyId: k.keyId, Plaintext: 'aGVsbG8=' };
    case 'Decrypt':
      return { CiphertextBlob: k.blob };
    case 'GenerateDataKey':
    case 'GenerateDataKeyWithoutPlaintext':
      return { KeyId: k.keyId };
    case 'GenerateAndExportDataKey':
      return { KeyId: k.keyId, ...exportParams };
    case 'ExportDataKey':
      return { CiphertextBlob: k.blob, ...exportParams };
    case 'ReEncrypt':
      return { CiphertextBlob: k.blob, DestinationKeyId: symmetricDestination.keyId };
    case 'ReEncrypt (destination)':
      return { CiphertextBlob: symmetricDestination.blob, DestinationKeyId: k.keyId };
    case 'ReEncryptFromAsymmetric':
      return { CiphertextBlob: k.rsaCiphertext, SourceKeyId: k.keyId, SourceKeyVersionId: k.versionId, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', DestinationKeyId: symmetricDestination.keyId };
    case 'AsymmetricEncrypt':
      return { ...target, Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: 'aGVsbG8=' };
    case 'AsymmetricDecrypt':
      return { ...target, Algorithm: 'RSAES_OAEP_SHA_256', CiphertextBlob: k.rsaCiphertext };
    case 'AsymmetricSign':
      return { ...target, Algorithm: 'ECDSA_SHA_256', Digest: digest };
    case 'AsymmetricVerify':
      return { ...target, Algorithm: 'ECDSA_SHA_256', Digest: digest, Value: k.signature };
    case 'GetPublicKey':
      return target;
    case 'GenerateMac':
      return { KeyId: k.keyId, Algorithm: 'HMAC_SHA_256', Message: 'aGVsbG8=' };
    case 'VerifyMac':
      return { KeyId: k.keyId, Algorithm: 'HMAC_SHA_256', Message: 'aGVsbG8=', Mac: 'aGVsbG8=' };
  }
}

const wireAction = (action: UsageAction | 'ReEncrypt (destination)'): string =>
  action === 'ReEncryptFromAsymmetric' || action === 'ReEncrypt (destination)' ? 'ReEncrypt' : action;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  symmetricDestination = await makeKey('SOFTWARE', 'symmetric-encrypt');
  for (const tier of ['HSM', 'SOFTWARE'] as const) {
    for (const column of Object.keys(SPEC) as UsageColumn[]) keys.set(`${tier}/${column}`, await makeKey(tier, column));
  }
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

describe.each(['HSM', 'SOFTWARE'] as const)('%s tier: usage × action through the SDK', (tier) => {
  const columns = USAGE_COLUMNS;
  const cells = [...USAGE_ACTIONS, 'ReEncrypt (destination)' as const].flatMap((action) => columns.map((column) => [action, column] as const));

  it.each(cells)('%s on a %s key', async (action, column) => {
    const key = keys.get(`${tier}/${column}`)!;
    const allowed = usageAllows(action === 'ReEncrypt (destination)' ? 'ReEncrypt' : action, column);
    const wire = wireAction(action);
    if (!(wire in allActions)) {
      // Not served yet: the endpoint's own 404, never a 5xx.
      const error = await sdkError(() => call(wire, paramsFor(action, key)));
      expect(error).toMatchObject({ code: 'InvalidAction.NotFound', statusCode: 404 });
      return;
    }
    let outcome: { ok: true } | { ok: false; code: string; statusCode?: number; message: string };
    try {
      await call(wire, paramsFor(action, key));
      outcome = { ok: true };
    } catch (error) {
      const e = error as { data?: { Code?: string; HttpStatus?: number; Message?: string }; statusCode?: number; message: string };
      outcome = { ok: false, code: e.data?.Code ?? 'unknown', statusCode: e.statusCode ?? e.data?.HttpStatus, message: e.data?.Message ?? e.message };
    }
    if (!outcome.ok) expect(outcome.statusCode, outcome.message).toBeLessThan(500);
    if (allowed) {
      expect(outcome, JSON.stringify(outcome)).toEqual({ ok: true });
    } else {
      expect(outcome).toMatchObject({ ok: false, code: 'Rejected.UnsupportedOperation', statusCode: 400 });
    }
  });
});
