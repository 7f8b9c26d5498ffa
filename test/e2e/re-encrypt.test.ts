import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccessKey } from '../../src/services/access.js';
import { systemCaller } from '../../src/services/context.js';
import { createKeyIn, instanceOfTier } from '../helpers/fixtures.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 15, ReEncrypt through the SDK transport (callApi; 1.2.0 has no ReEncrypt): between the
 * tiers and back with contexts, the caller's access to both keys, both keys' state rules.
 */
let server: TestServer;
let call: CallApi;
let hsmKey: string;
let softwareKey: string;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  hsmKey = (await createKeyIn(call, server.hsmInstanceId)).keyId;
  softwareKey = (await createKeyIn(call, server.softwareInstanceId)).keyId;
});

afterAll(async () => {
  await server?.stop();
});

const ctxA = JSON.stringify({ order: '42', tenant: 'acme' });
const ctxB = JSON.stringify({ stage: 'archive' });

describe('ReEncrypt', () => {
  it('HSM → SOFTWARE → HSM with contexts: the answer names the destination primary version and decrypts to the original', async () => {
    const plaintext = 'envelope: ünïcödé \u0000 ok';
    const first = await call('Encrypt', { KeyId: hsmKey, Plaintext: plaintext, EncryptionContext: ctxA });

    const toSoftware = await call('ReEncrypt', {
      CiphertextBlob: first.CiphertextBlob,
      SourceEncryptionContext: ctxA,
      DestinationKeyId: softwareKey,
      DestinationEncryptionContext: ctxB,
    });
    expect(Object.keys(toSoftware).sort()).toEqual(['CiphertextBlob', 'KeyId', 'KeyVersionId', 'RequestId']);
    expect(toSoftware.KeyId).toBe(softwareKey);
    expect(toSoftware.KeyVersionId).toBe((await call('DescribeKey', { KeyId: softwareKey })).KeyMetadata.PrimaryKeyVersion);
    const viaSoftware = await call('Decrypt', { CiphertextBlob: toSoftware.CiphertextBlob, EncryptionContext: ctxB });
    expect(viaSoftware).toMatchObject({ KeyId: softwareKey, Plaintext: plaintext });
    // The new blob is bound to the destination context only.
    expect((await sdkError(() => call('Decrypt', { CiphertextBlob: toSoftware.CiphertextBlob, EncryptionContext: ctxA }))).code).toBe('InvalidCiphertext');

    const back = await call('ReEncrypt', {
      CiphertextBlob: toSoftware.CiphertextBlob,
      SourceEncryptionContext: ctxB,
      DestinationKeyId: hsmKey,
    });
    expect(back.KeyId).toBe(hsmKey);
    expect((await call('Decrypt', { CiphertextBlob: back.CiphertextBlob })).Plaintext).toBe(plaintext);
  });

  it('a data key re-encrypted stays a data key: Decrypt still returns GenerateDataKey Plaintext', async () => {
    const dk = await call('GenerateDataKey', { KeyId: softwareKey, EncryptionContext: ctxA });
    const moved = await call('ReEncrypt', { CiphertextBlob: dk.CiphertextBlob, SourceEncryptionContext: ctxA, DestinationKeyId: hsmKey });
    expect((await call('Decrypt', { CiphertextBlob: moved.CiphertextBlob })).Plaintext).toBe(dk.Plaintext);
  });

  it('a wrong or missing source context is refused as Decrypt refuses it (InvalidCiphertext 400)', async () => {
    const blob = (await call('Encrypt', { KeyId: hsmKey, Plaintext: 'x', EncryptionContext: ctxA })).CiphertextBlob;
    for (const SourceEncryptionContext of [ctxB, undefined, JSON.stringify({ order: '43', tenant: 'acme' })]) {
      const e = await sdkError(() => call('ReEncrypt', { CiphertextBlob: blob, SourceEncryptionContext, DestinationKeyId: softwareKey }));
      expect({ code: e.code, status: e.statusCode }).toEqual({ code: 'InvalidCiphertext', status: 400 });
    }
    for (const CiphertextBlob of ['junk', Buffer.alloc(80, 1).toString('base64')]) {
      const e = await sdkError(() => call('ReEncrypt', { CiphertextBlob, DestinationKeyId: softwareKey }));
      expect({ code: e.code, status: e.statusCode }).toEqual({ code: 'InvalidCiphertext', status: 400 });
    }
  });

  it('bad input is 4xx: missing fields, a bad context, an unknown destination', async () => {
    const blob = (await call('Encrypt', { KeyId: hsmKey, Plaintext: 'x' })).CiphertextBlob;
    expect((await sdkError(() => call('ReEncrypt', { CiphertextBlob: blob }))).code).toBe('MissingParameter');
    expect((await sdkError(() => call('ReEncrypt', { DestinationKeyId: hsmKey }))).code).toBe('MissingParameter');
    const badCtx = await sdkError(() => call('ReEncrypt', { CiphertextBlob: blob, DestinationKeyId: hsmKey, DestinationEncryptionContext: '[1]' }));
    expect({ code: badCtx.code, status: badCtx.statusCode }).toEqual({ code: 'InvalidParameter', status: 400 });
    // The message names the parameter the client sent (it named "EncryptionContext", which ReEncrypt has not).
    expect(badCtx.data.Message).toContain('"DestinationEncryptionContext"');
    const badSource = await sdkError(() => call('ReEncrypt', { CiphertextBlob: blob, DestinationKeyId: hsmKey, SourceEncryptionContext: 'not json' }));
    expect([badSource.code, badSource.data.Message]).toEqual(['InvalidParameter', expect.stringContaining('"SourceEncryptionContext"')]);
    const nowhere = await sdkError(() => call('ReEncrypt', { CiphertextBlob: blob, DestinationKeyId: 'alias/nowhere' }));
    expect({ code: nowhere.code, status: nowhere.statusCode }).toEqual({ code: 'Forbidden.AliasNotFound', status: 404 });
  });

  it('a key-user limited to the HSM instance cannot re-encrypt from or to a SOFTWARE key: 404 exactly as a missing key', async () => {
    const user = await createAccessKey(server.kms.deps, { role: 'key-user', instanceIds: [server.hsmInstanceId] }, systemCaller);
    const asUser = openApiClient(server.endpoint, { accessKeyId: user.accessKeyId, accessKeySecret: user.accessKeySecret });
    const hsmBlob = (await call('Encrypt', { KeyId: hsmKey, Plaintext: 'x' })).CiphertextBlob;
    const softwareBlob = (await call('Encrypt', { KeyId: softwareKey, Plaintext: 'x' })).CiphertextBlob;
    const missing = await sdkError(() => asUser('ReEncrypt', { CiphertextBlob: hsmBlob, DestinationKeyId: 'key-hzznothere0000000000' }));
    const toOther = await sdkError(() => asUser('ReEncrypt', { CiphertextBlob: hsmBlob, DestinationKeyId: softwareKey }));
    const fromOther = await sdkError(() => asUser('ReEncrypt', { CiphertextBlob: softwareBlob, DestinationKeyId: hsmKey }));
    for (const e of [missing, toOther, fromOther]) {
      expect({ code: e.code, status: e.statusCode, message: e.data.Message }).toEqual({
        code: 'Forbidden.KeyNotFound',
        status: 404,
        message: 'The specified Key is not found.',
      });
    }
    // Within its instance it works.
    const own = await asUser('ReEncrypt', { CiphertextBlob: hsmBlob, DestinationKeyId: hsmKey });
    expect((await asUser('Decrypt', { CiphertextBlob: own.CiphertextBlob })).Plaintext).toBe('x');
  });

  it('state rules apply to both keys (§5.1): a Disabled or PendingDeletion destination or source → 409', async () => {
    const fresh = async () => (await createKeyIn(call, server.softwareInstanceId)).keyId;
    const disabledDest = await fresh();
    await call('DisableKey', { KeyId: disabledDest });
    const pendingDest = await fresh();
    await call('ScheduleKeyDeletion', { KeyId: pendingDest, PendingWindowInDays: 7 });
    const good = (await call('Encrypt', { KeyId: hsmKey, Plaintext: 'x' })).CiphertextBlob;
    for (const [dest, code] of [
      [disabledDest, 'Rejected.Disabled'],
      [pendingDest, 'Rejected.PendingDeletion'],
    ] as const) {
      const e = await sdkError(() => call('ReEncrypt', { CiphertextBlob: good, DestinationKeyId: dest }));
      expect({ code: e.code, status: e.statusCode }).toEqual({ code, status: 409 });
    }
    const source = await fresh();
    const blob = (await call('Encrypt', { KeyId: source, Plaintext: 'x' })).CiphertextBlob;
    await call('DisableKey', { KeyId: source });
    const e = await sdkError(() => call('ReEncrypt', { CiphertextBlob: blob, DestinationKeyId: hsmKey }));
    expect({ code: e.code, status: e.statusCode }).toEqual({ code: 'Rejected.Disabled', status: 409 });
  });

  it.each(['HSM', 'SOFTWARE'] as const)(
    'the asymmetric source form: an AsymmetricEncrypt ciphertext of a %s RSA key, moved under a symmetric key; Decrypt returns its Plaintext',
    async (tier) => {
      const rsa = await createKeyIn(call, instanceOfTier(server, tier), { KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT/DECRYPT' });
      const source = { SourceKeyId: rsa.keyId, SourceKeyVersionId: rsa.versionId, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_1' };
      const secret = Buffer.from([0, 1, 2, 250, 251, 252, 0x41]).toString('base64');
      const asym = await call('AsymmetricEncrypt', { KeyId: rsa.keyId, KeyVersionId: rsa.versionId, Algorithm: 'RSAES_OAEP_SHA_1', Plaintext: secret });
      const moved = await call('ReEncrypt', { CiphertextBlob: asym.CiphertextBlob, DestinationKeyId: softwareKey, DestinationEncryptionContext: ctxB, ...source });
      expect(moved.KeyId).toBe(softwareKey);
      expect((await call('Decrypt', { CiphertextBlob: moved.CiphertextBlob, EncryptionContext: ctxB })).Plaintext).toBe(secret);

      // A tampered ciphertext is InvalidCiphertext, one form of the source missing is MissingParameter,
      // a context on an asymmetric source is refused, and a symmetric key cannot be the asymmetric source.
      const tampered = Buffer.from(asym.CiphertextBlob as string, 'base64');
      tampered[10]! ^= 1;
      const bad = await sdkError(() => call('ReEncrypt', { CiphertextBlob: tampered.toString('base64'), DestinationKeyId: softwareKey, ...source }));
      expect({ code: bad.code, status: bad.statusCode }).toEqual({ code: 'InvalidCiphertext', status: 400 });
      const partial = await sdkError(() => call('ReEncrypt', { CiphertextBlob: asym.CiphertextBlob, DestinationKeyId: softwareKey, SourceKeyId: rsa.keyId }));
      expect({ code: partial.code, status: partial.statusCode }).toEqual({ code: 'MissingParameter', status: 400 });
      const withCtx = await sdkError(() => call('ReEncrypt', { CiphertextBlob: asym.CiphertextBlob, DestinationKeyId: softwareKey, SourceEncryptionContext: ctxA, ...source }));
      expect({ code: withCtx.code, status: withCtx.statusCode }).toEqual({ code: 'InvalidParameter', status: 400 });
      const symVersion = (await call('DescribeKey', { KeyId: hsmKey })).KeyMetadata.PrimaryKeyVersion;
      const wrongKey = await sdkError(() =>
        call('ReEncrypt', { CiphertextBlob: asym.CiphertextBlob, DestinationKeyId: softwareKey, SourceKeyId: hsmKey, SourceKeyVersionId: symVersion, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }),
      );
      expect({ code: wrongKey.code, status: wrongKey.statusCode }).toEqual({ code: 'Rejected.UnsupportedOperation', status: 400 });
      // A key-user of the other instance: the RSA source is answered as a missing key.
      const otherInstance = tier === 'HSM' ? server.softwareInstanceId : server.hsmInstanceId;
      const user = await createAccessKey(server.kms.deps, { role: 'key-user', instanceIds: [otherInstance] }, systemCaller);
      const asUser = openApiClient(server.endpoint, { accessKeyId: user.accessKeyId, accessKeySecret: user.accessKeySecret });
      const ownKey = tier === 'HSM' ? softwareKey : hsmKey;
      const hidden = await sdkError(() => asUser('ReEncrypt', { CiphertextBlob: asym.CiphertextBlob, DestinationKeyId: ownKey, ...source }));
      expect({ code: hidden.code, status: hidden.statusCode }).toEqual({ code: 'Forbidden.KeyNotFound', status: 404 });
    },
  );

  it('DryRun: DryRunOperationError when it would succeed, ValidationError otherwise', async () => {
    const blob = (await call('Encrypt', { KeyId: hsmKey, Plaintext: 'x', EncryptionContext: ctxA })).CiphertextBlob;
    const ok = await sdkError(() => call('ReEncrypt', { CiphertextBlob: blob, SourceEncryptionContext: ctxA, DestinationKeyId: softwareKey, DryRun: true }));
    expect({ code: ok.code, status: ok.statusCode }).toEqual({ code: 'DryRunOperationError', status: 400 });
    const bad = await sdkError(() => call('ReEncrypt', { CiphertextBlob: blob, SourceEncryptionContext: ctxB, DestinationKeyId: softwareKey, DryRun: true }));
    expect({ code: bad.code, status: bad.statusCode }).toEqual({ code: 'ValidationError', status: 400 });
    expect(bad.message).toContain('InvalidCiphertext');
  });
});
