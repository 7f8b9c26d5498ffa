import { constants, createHash, createHmac, verify as cryptoVerify, publicEncrypt, randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MASTER_WRAPPING_KEY_ID } from '../../src/hsm/pkcs11/master-key.js';
import * as m from '../../src/hsm/pkcs11/mechanisms.js';
import { findObjects } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import { wrappableTemplate } from '../../src/hsm/pkcs11/wrapped-keys.js';
import { deleteKeyIfDue } from '../../src/services/key-deletion.js';
import { expireKeyMaterial } from '../../src/services/key-material.js';
import { reconcileHsmObjects } from '../../src/services/reconciler.js';
import { getKey } from '../../src/store/keys.js';
import { getVersion } from '../../src/store/versions.js';
import { decryptBlobWithMaterial } from '../helpers/byok.js';
import { createInstanceIn, createKeyIn } from '../helpers/fixtures.js';
import { importMaterial, waitFor } from '../helpers/jobs.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { type TestServer, startServer } from '../helpers/server.js';
import { withTokenSession } from '../helpers/token-session.js';

/**
 * Issue 16, HsmEncryptedDatabase (Alibaba's KeyStorageMechanism) on a real SoftHSM2 token, real
 * Postgres and the real SDK transport: version keys are wrapped (AES-KWP) under a trusted,
 * non-extractable master key and stored in the version row; the token holds no object per
 * version; use unwraps into sensitive, non-extractable session objects.
 */
let server: TestServer;
let call: CallApi;
let wrappedInstanceId: string;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  wrappedInstanceId = await createInstanceIn(server, { type: 'HSM', keyQuota: 1_000, qps: 1_000, keyStorageMechanism: 'HsmEncryptedDatabase' });
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

const createKey = (extra: Record<string, unknown> = {}) => createKeyIn(call, wrappedInstanceId, extra);
const encrypt = async (keyId: string, plaintext: string) => (await call('Encrypt', { KeyId: keyId, Plaintext: plaintext })) as Record<string, string>;
const decrypt = async (blob: string, on: CallApi = call) => (await on('Decrypt', { CiphertextBlob: blob })).Plaintext as string;
const versionRow = async (versionId: string) => (await getVersion(server.kms.deps.db, versionId))!;

/** Every token object the user can see (private and public, token and session objects). */
const tokenObjectCount = () => withTokenSession(server, (p11, session) => findObjects(p11, session, [{ type: pkcs11js.CKA_TOKEN, value: true }]).length);
const flag = (value: unknown) => (Buffer.isBuffer(value) ? value[0] === 1 : value === true);
const code = (error: unknown) => (error as { code?: number }).code;

describe('an HsmEncryptedDatabase instance, through the SDK', () => {
  it('new keys inherit the mechanism; the version row holds a wrapped blob and the token no object', async () => {
    const before = await tokenObjectCount();
    const { keyId, versionId } = await createKey();
    const key = (await getKey(server.kms.deps.db, keyId))!;
    expect(key.storageMechanism).toBe('HsmEncryptedDatabase');
    const row = await versionRow(versionId);
    expect(row.storage).toBe('wrapped');
    // AES-KWP of a 32-byte key is 40 bytes; no sealed material.
    expect(row.wrappedMaterial?.length).toBe(40);
    expect(row.sealedMaterial).toBeNull();
    expect(await tokenObjectCount()).toBe(before);
    const instance = await call('GetKmsInstance', { KmsInstanceId: wrappedInstanceId });
    expect(instance.KmsInstance.KeyStorageMechanism).toBe('HsmEncryptedDatabase');
  });

  it('Encrypt / Decrypt / GenerateDataKey', async () => {
    const { keyId, versionId } = await createKey();
    const sealed = await encrypt(keyId, 'hello wrapped');
    expect(sealed.KeyVersionId).toBe(versionId);
    expect(await decrypt(sealed.CiphertextBlob!)).toBe('hello wrapped');
    const dataKey = await call('GenerateDataKey', { KeyId: keyId, NumberOfBytes: 32 });
    expect(await decrypt(dataKey.CiphertextBlob as string)).toBe(dataKey.Plaintext);
    // A wrong EncryptionContext is refused as a bad ciphertext, not a server error.
    const withContext = await call('Encrypt', { KeyId: keyId, Plaintext: 'ctx', EncryptionContext: JSON.stringify({ a: 'b' }) });
    const refused = await sdkError(() => call('Decrypt', { CiphertextBlob: withContext.CiphertextBlob, EncryptionContext: JSON.stringify({ a: 'c' }) }));
    expect(refused.code).toBe('InvalidCiphertext');
  });

  it('rotation: CreateKeyVersion makes a new wrapped primary; old ciphertexts still decrypt', async () => {
    const { keyId, versionId } = await createKey();
    const old = await encrypt(keyId, 'before rotation');
    const created = (await call('CreateKeyVersion', { KeyId: keyId })).KeyVersion.KeyVersionId as string;
    expect(created).not.toBe(versionId);
    expect((await versionRow(created)).storage).toBe('wrapped');
    const fresh = await encrypt(keyId, 'after rotation');
    expect(fresh.KeyVersionId).toBe(created);
    expect(await decrypt(old.CiphertextBlob!)).toBe('before rotation');
    expect(await decrypt(fresh.CiphertextBlob!)).toBe('after rotation');
    // Automatic rotation is allowed for HsmEncryptedDatabase keys (alibaba-api.md §5.2).
    await call('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: true, RotationInterval: '30d' });
  });

  it('the token object count does not grow when 50 versions are created', async () => {
    const { keyId } = await createKey();
    const before = await tokenObjectCount();
    const blobs: string[] = [];
    for (let i = 0; i < 49; i++) {
      await call('CreateKeyVersion', { KeyId: keyId });
      blobs.push((await encrypt(keyId, `v${i}`)).CiphertextBlob!);
    }
    expect(await tokenObjectCount()).toBe(before);
    const versions = await call('ListKeyVersions', { KeyId: keyId, PageSize: 100 });
    expect(versions.TotalCount).toBe(50);
    expect(await decrypt(blobs[0]!)).toBe('v0');
  });

  it('MAC keys: GenerateMac / VerifyMac with a wrapped HMAC key, the same HMAC node:crypto computes', async () => {
    const { keyId, versionId } = await createKey({ KeySpec: 'HMAC_SHA256' });
    expect((await versionRow(versionId)).storage).toBe('wrapped');
    const message = randomBytes(100).toString('base64');
    const mac = (await call('GenerateMac', { KeyId: keyId, Algorithm: 'HMAC_SHA_256', Message: message })).Mac as string;
    expect(Buffer.from(mac, 'base64').length).toBe(32);
    expect((await call('VerifyMac', { KeyId: keyId, Algorithm: 'HMAC_SHA_256', Message: message, Mac: mac })).Value).toBe(true);
    // Not the MAC of a known key (sanity: the answer is not an HMAC under an all-zero key).
    expect(mac).not.toBe(createHmac('sha256', Buffer.alloc(32)).update(Buffer.from(message, 'base64')).digest('base64'));
  });

  it.each([
    ['RSA_2048', 'SIGN/VERIFY', 'RSA_PSS_SHA_256'],
    ['RSA_3072', 'SIGN/VERIFY', 'RSA_PKCS1_SHA_256'],
    ['EC_P256', 'SIGN/VERIFY', 'ECDSA_SHA_256'],
    ['EC_P256K', 'SIGN/VERIFY', 'ECDSA_SHA_256'],
  ] as const)('key pairs: %s %s — the wrapped private half signs (%s); node:crypto verifies with GetPublicKey', async (spec, usage, algorithm) => {
    const before = await tokenObjectCount();
    const { keyId, versionId } = await createKey({ KeySpec: spec, KeyUsage: usage });
    const row = await versionRow(versionId);
    expect(row.storage).toBe('wrapped');
    expect(row.publicKey).not.toBeNull();
    expect(await tokenObjectCount()).toBe(before);
    const pem = (await call('GetPublicKey', { KeyId: keyId, KeyVersionId: versionId })).PublicKey as string;
    const message = randomBytes(64);
    const digest = createHash('sha256').update(message).digest('base64');
    const signed = await call('AsymmetricSign', { KeyId: keyId, KeyVersionId: versionId, Algorithm: algorithm, Digest: digest });
    const signature = Buffer.from(signed.Value as string, 'base64');
    const verifyOptions =
      algorithm === 'RSA_PSS_SHA_256'
        ? { key: pem, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }
        : { key: pem, ...(algorithm === 'ECDSA_SHA_256' ? { dsaEncoding: 'der' as const } : {}) };
    expect(cryptoVerify('sha256', message, verifyOptions, signature)).toBe(true);
    expect((await call('AsymmetricVerify', { KeyId: keyId, KeyVersionId: versionId, Algorithm: algorithm, Digest: digest, Value: signed.Value })).Value).toBe(true);
  });

  it('key pairs: RSA_2048 ENCRYPT/DECRYPT — node:crypto OAEP-SHA256 ciphertexts decrypt with the wrapped private half; a bad one is InvalidCiphertext', async () => {
    const { keyId, versionId } = await createKey({ KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT/DECRYPT' });
    const pem = (await call('GetPublicKey', { KeyId: keyId, KeyVersionId: versionId })).PublicKey as string;
    const secret = randomBytes(32);
    const ciphertext = publicEncrypt({ key: pem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, secret);
    const decrypted = await call('AsymmetricDecrypt', { KeyId: keyId, KeyVersionId: versionId, Algorithm: 'RSAES_OAEP_SHA_256', CiphertextBlob: ciphertext.toString('base64') });
    expect(decrypted.Plaintext).toBe(secret.toString('base64'));
    const bad = Buffer.from(ciphertext);
    bad[10]! ^= 0x01;
    const refused = await sdkError(() => call('AsymmetricDecrypt', { KeyId: keyId, KeyVersionId: versionId, Algorithm: 'RSAES_OAEP_SHA_256', CiphertextBlob: bad.toString('base64') }));
    expect(refused.code).toBe('InvalidCiphertext');
  });

  it('a spec the HSM cannot make is refused with a clear InvalidParameter, as on HsmInternal', async () => {
    const refused = await sdkError(() => call('CreateKey', { DKMSInstanceId: wrappedInstanceId, KeySpec: 'EC_SM2', KeyUsage: 'SIGN/VERIFY' }));
    expect(refused.code).toBe('InvalidParameter');
  });

  it('BYOK: import (RSA-OAEP, node:crypto wrap), DeleteKeyMaterial, re-import, ScheduleKeyDeletion', async () => {
    const before = await tokenObjectCount();
    const { keyId, versionId } = await createKey({ Origin: 'EXTERNAL' });
    const material = randomBytes(32);
    await importMaterial(call, keyId, material);
    const row = await versionRow(versionId);
    expect(row.storage).toBe('wrapped');
    expect(row.hasMaterial).toBe(true);
    expect(row.wrappedMaterial?.length).toBe(40);
    const sealed = await encrypt(keyId, 'imported');
    // The key really is the imported material: the blob opens with it outside the KMS.
    expect(decryptBlobWithMaterial(sealed.CiphertextBlob!, material).plaintext).toBe('imported');
    expect(await decrypt(sealed.CiphertextBlob!)).toBe('imported');

    await call('DeleteKeyMaterial', { KeyId: keyId });
    expect((await versionRow(versionId)).wrappedMaterial).toBeNull();
    expect((await sdkError(() => call('Decrypt', { CiphertextBlob: sealed.CiphertextBlob }))).code).toBe('Rejected.PendingImport');
    // Other material is refused (seed 000's binding); the same material revives the version.
    expect((await sdkError(() => importMaterial(call, keyId, randomBytes(32)))).code).toBe('InvalidKeyMaterial');
    await importMaterial(call, keyId, material);
    expect(await decrypt(sealed.CiphertextBlob!)).toBe('imported');

    await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
    const deleteDate = (await getKey(server.kms.deps.db, keyId))!.deleteDate!;
    const later = { now: () => new Date(deleteDate.getTime() + 1_000) };
    expect(await deleteKeyIfDue({ ...server.kms.deps, clock: later }, keyId, deleteDate)).toBe('deleted');
    expect(await getVersion(server.kms.deps.db, versionId)).toBeUndefined();
    expect((await sdkError(() => call('Decrypt', { CiphertextBlob: sealed.CiphertextBlob }))).code).toBe('Forbidden.KeyNotFound');
    // The wrapping pairs of the downloads went with the key: nothing of it is left in the token.
    expect(await tokenObjectCount()).toBe(before);
  });

  it('material expiry erases the wrapped blob; re-importing the same material revives the version', async () => {
    const { keyId, versionId } = await createKey({ Origin: 'EXTERNAL' });
    const material = randomBytes(32);
    const expireUnix = Math.floor(Date.now() / 1000) + 3_600;
    await importMaterial(call, keyId, material, expireUnix);
    const sealed = await encrypt(keyId, 'expiring');
    const expireAt = (await versionRow(versionId)).materialExpireAt!;
    const later = { now: () => new Date(expireAt.getTime() + 1_000) };
    expect(await expireKeyMaterial({ ...server.kms.deps, clock: later }, keyId, versionId, expireAt)).toBe('expired');
    const row = await versionRow(versionId);
    expect([row.hasMaterial, row.wrappedMaterial]).toEqual([false, null]);
    expect((await sdkError(() => call('Decrypt', { CiphertextBlob: sealed.CiphertextBlob }))).code).toBe('Rejected.PendingImport');
    await importMaterial(call, keyId, material);
    expect(await decrypt(sealed.CiphertextBlob!)).toBe('expiring');
  });

  it('the reconciler leaves wrapped versions and their unwrapped session objects alone', async () => {
    const { keyId, versionId } = await createKey();
    const sealed = await encrypt(keyId, 'reconciled');
    for (let run = 0; run < 2; run++) {
      const result = await reconcileHsmObjects(server.kms.deps, { graceMs: 0 });
      expect(result.destroyed.map((d) => d.objectId)).not.toContain(versionId);
      expect(result.flagged.map((f) => f.objectId)).not.toContain(versionId);
    }
    expect(await decrypt(sealed.CiphertextBlob!)).toBe('reconciled');
  });

  it('a tampered blob in the database gives a clear InternalFailure, and the server keeps serving', async () => {
    const { keyId, versionId } = await createKey();
    const blob = (await versionRow(versionId)).wrappedMaterial!;
    const tampered = Buffer.from(blob);
    tampered[5]! ^= 0x01;
    await server.kms.deps.db.query('UPDATE key_versions SET wrapped_material = $2 WHERE id = $1', [versionId, tampered]);
    // Written behind the service's back: its metadata cache and unwrapped handle must not hide it.
    server.kms.caches.dropEverywhere();
    server.kms.deps.hsm.forgetWrappedKey(versionId);
    const refused = await sdkError(() => call('Encrypt', { KeyId: keyId, Plaintext: 'x' }));
    expect(refused.code).toBe('InternalFailure');
    expect(refused.statusCode).toBe(500);
    // The client sees only the request id; the operator's log line says what happened.
    const requestId = refused.data.RequestId as string;
    await waitFor('the failure to be logged', () => server.logs.some((l) => l.includes(requestId) && l.includes('does not unwrap under the HSM master key')), 5_000, 20);
    const other = await createKey();
    expect(await decrypt((await encrypt(other.keyId, 'still fine')).CiphertextBlob!)).toBe('still fine');
  });
});

describe('PKCS#11: what is really in the token', () => {
  it('the master wrapping key is trusted, private, sensitive, non-extractable and only wraps/unwraps', async () => {
    const attributes = await withTokenSession(server, (p11, session) => {
      const found = findObjects(p11, session, m.secretKeyById(MASTER_WRAPPING_KEY_ID));
      expect(found).toHaveLength(1);
      const types = [
        pkcs11js.CKA_TRUSTED,
        pkcs11js.CKA_PRIVATE,
        pkcs11js.CKA_SENSITIVE,
        pkcs11js.CKA_EXTRACTABLE,
        pkcs11js.CKA_WRAP,
        pkcs11js.CKA_UNWRAP,
        pkcs11js.CKA_ENCRYPT,
        pkcs11js.CKA_DECRYPT,
      ];
      return p11.C_GetAttributeValue(session, found[0]!, types.map((type) => ({ type }))).map((a) => flag(a.value));
    });
    expect(attributes).toEqual([true, true, true, false, true, true, false, false]);
  });

  it('unwrapped version keys are session objects, sensitive and non-extractable; CKA_VALUE is unreadable', async () => {
    const { keyId, versionId } = await createKey();
    await encrypt(keyId, 'unwrap me');
    await withTokenSession(server, (p11, session) => {
      const [handle, ...more] = findObjects(p11, session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_ID, value: Buffer.from(versionId, 'utf8') },
      ]);
      expect(handle).toBeDefined();
      expect(more).toHaveLength(0);
      const [token, sensitive, extractable] = p11.C_GetAttributeValue(session, handle!, [
        { type: pkcs11js.CKA_TOKEN },
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_EXTRACTABLE },
      ]);
      expect([flag(token?.value), flag(sensitive?.value), flag(extractable?.value)]).toEqual([false, true, false]);
      let valueError: unknown;
      try {
        p11.C_GetAttributeValue(session, handle!, [{ type: pkcs11js.CKA_VALUE }]);
      } catch (error) {
        valueError = error;
      }
      expect(code(valueError)).toBe(pkcs11js.CKR_ATTRIBUTE_SENSITIVE);
    });
  });

  it('a version key (wrap-with-trusted) cannot be wrapped by an untrusted key: CKR_KEY_NOT_WRAPPABLE; the master can', async () => {
    await withTokenSession(server, (p11, session) => {
      const versionKey = p11.C_GenerateKey(session, m.aesKeyGen, wrappableTemplate('aes', 'probe-version', 32));
      const untrusted = p11.C_GenerateKey(session, m.aesKeyGen, m.aesKeyTemplate({ token: false, valueLength: 32, wrap: true, encrypt: false }));
      try {
        let refusal: unknown;
        try {
          p11.C_WrapKey(session, m.aesKeyWrapPad, untrusted, versionKey, Buffer.alloc(256));
        } catch (error) {
          refusal = error;
        }
        expect(code(refusal)).toBe(pkcs11js.CKR_KEY_NOT_WRAPPABLE);
        const [master] = findObjects(p11, session, m.secretKeyById(MASTER_WRAPPING_KEY_ID));
        expect(p11.C_WrapKey(session, m.aesKeyWrapPad, master!, versionKey, Buffer.alloc(256)).length).toBe(40);
      } finally {
        p11.C_DestroyObject(session, versionKey);
        p11.C_DestroyObject(session, untrusted);
      }
    });
  });
});

describe('other processes', () => {
  let nodeB: ServeProcess | undefined;
  afterAll(async () => {
    await nodeB?.stop();
  });

  it('a fresh process re-unwraps: ciphertexts made here decrypt there, and a restarted process too', async () => {
    const { keyId } = await createKey();
    const blobs = await Promise.all(['a', 'b', 'c'].map(async (p) => (await encrypt(keyId, p)).CiphertextBlob!));
    nodeB = await startServeProcess(server);
    const onB = openApiClient(nodeB.endpoint, server.admin);
    expect(await Promise.all(blobs.map((b) => decrypt(b, onB)))).toEqual(['a', 'b', 'c']);
    const madeOnB = (await onB('Encrypt', { KeyId: keyId, Plaintext: 'from B' })).CiphertextBlob as string;
    expect(await decrypt(madeOnB)).toBe('from B');
    // A key created on B is usable here at once (no token object to become visible).
    const createdOnB = (await createKeyIn(onB, wrappedInstanceId)).keyId;
    expect(await decrypt((await encrypt(createdOnB, 'at once')).CiphertextBlob!)).toBe('at once');

    // Restart: the new process has no unwrapped handles; it unwraps from the rows again.
    await nodeB.stop();
    nodeB = await startServeProcess(server);
    const onRestarted = openApiClient(nodeB.endpoint, server.admin);
    expect(await decrypt(madeOnB, onRestarted)).toBe('from B');
    expect(await Promise.all(blobs.map((b) => decrypt(b, onRestarted)))).toEqual(['a', 'b', 'c']);
  }, 180_000);

  it('issue 19: an HsmInternal key created on one process and used at once on another never answers 500 (16 parallel pairs)', async () => {
    nodeB ??= await startServeProcess(server);
    const onB = openApiClient(nodeB.endpoint, server.admin);
    const outcomes = await Promise.all(
      Array.from({ length: 16 }, async () => {
        const keyId = (await createKeyIn(call, server.hsmInstanceId)).keyId;
        try {
          const blob = (await onB('Encrypt', { KeyId: keyId, Plaintext: 'cross' })).CiphertextBlob as string;
          return (await decrypt(blob)) === 'cross' ? 'OK' : 'wrong plaintext';
        } catch (error) {
          const e = await sdkError(() => Promise.reject(error));
          return `${e.statusCode} ${e.code}`;
        }
      }),
    );
    expect(outcomes.filter((o) => o.startsWith('500'))).toEqual([]);
    // The bounded re-search finds them (SoftHSM2 refreshes within it); a 503 would be allowed, a 500 never.
    expect(outcomes.filter((o) => o !== 'OK' && !o.startsWith('503'))).toEqual([]);
  }, 180_000);
});
