import { execFile } from 'node:child_process';
import { createPublicKey, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wrapKeyMaterial } from '../../src/domain/client-wrap.js';
import type { WrappingAlgorithm } from '../../src/domain/byok.js';
import { decodeImportToken } from '../../src/domain/import-token.js';
import { findObjects } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import * as m from '../../src/hsm/pkcs11/mechanisms.js';
import { refillWrappingKeyPool } from '../../src/services/wrapping-keys.js';
import { listAudit } from '../../src/store/audit.js';
import { getKey, updateKey } from '../../src/store/keys.js';
import { getVersion } from '../../src/store/versions.js';
import { byokWorkDir, decryptBlobWithMaterial, sh } from '../helpers/byok.js';
import { createKeyId, createKeyIn } from '../helpers/fixtures.js';
import { type CallApi, KMS, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';
import { withTokenSession } from '../helpers/token-session.js';

/**
 * Issue 4: BYOK import, end to end through the real SDKs, with the seed's (000) steps run
 * verbatim with the openssl CLI, on a hardware key, a software key and a default key.
 */
let server: TestServer;
let call: CallApi;
/** Every secret this file handled, checked against the server's logs at the end. */
const secrets: string[] = [];

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
});

afterAll(async () => {
  await server?.stop();
});

const UNIFORM = { code: 'InvalidKeyMaterial', message: 'key material is invalid.' };

async function createExternalKey(target: 'hsm' | 'software' | 'default', extra: Record<string, string> = {}): Promise<string> {
  const instance = target === 'hsm' ? server.hsmInstanceId : target === 'software' ? server.softwareInstanceId : undefined;
  return createKeyId(call, { Origin: 'EXTERNAL', ...(instance ? { DKMSInstanceId: instance } : {}), ...extra });
}

async function importParams(keyId: string, algorithm: WrappingAlgorithm) {
  const params = await call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: algorithm });
  return { publicKey: Buffer.from(params.PublicKey as string, 'base64'), token: params.ImportToken as string, raw: params };
}

/** Steps 2–4 with node:crypto instead of openssl (for the many cases that are not about openssl). */
async function importMaterial(keyId: string, material: Buffer, algorithm: WrappingAlgorithm = 'RSAES_OAEP_SHA_256', extra: Record<string, unknown> = {}) {
  const { publicKey, token } = await importParams(keyId, algorithm);
  const encrypted = wrapKeyMaterial(publicKey, algorithm, material).toString('base64');
  secrets.push(material.toString('hex'), material.toString('base64'), encrypted);
  return call('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: encrypted, ImportToken: token, ...extra });
}

const tokenObjects = (versionId: string) => withTokenSession(server, (p11, session) => findObjects(p11, session, m.secretKeyById(versionId)).length);

/** The key's primary version row: seed 000's binding and expiry live on the version. */
const primaryOf = async (keyId: string) => getVersion(server.kms.deps.db, (await getKey(server.kms.deps.db, keyId))!.primaryVersionId);
const versionOf = async (keyId: string) => (await call('DescribeKey', { KeyId: keyId })).KeyMetadata.PrimaryKeyVersion as string;

describe('seed 000, steps 1–4 verbatim with the openssl CLI', () => {
  /** Step 2 through the API, step 3 with the seed's own openssl lines, step 4 through the API. */
  async function seedSteps(keyId: string, algorithm: WrappingAlgorithm, encryptLine: string, importWith: CallApi | 'legacy' = call) {
    const dir = await byokWorkDir();
    // Step 2: download the wrapping public key (DER) and the import token.
    let publicKeyBase64: string;
    let token: string;
    const legacy = legacyClient(server.endpoint, server.admin);
    if (importWith === 'legacy') {
      const params = await legacy.getParametersForImport(
        new KMS.GetParametersForImportRequest({ keyId, wrappingKeySpec: 'RSA_2048', wrappingAlgorithm: algorithm }),
      );
      publicKeyBase64 = params.publicKey;
      token = params.importToken;
      expect(params.keyId).toBe(keyId);
    } else {
      const params = await importParams(keyId, algorithm);
      publicKeyBase64 = params.publicKey.toString('base64');
      token = params.token;
    }
    await writeFile(path.join(dir, 'PublicKey.bin'), Buffer.from(publicKeyBase64, 'base64'));
    await writeFile(path.join(dir, 'token.txt'), token);
    // Step 3, verbatim.
    await sh(dir, 'openssl rand -out KeyMaterial.bin 32');
    await sh(dir, encryptLine);
    await sh(dir, 'openssl enc -e -base64 -A -in EncryptedKeyMaterial.bin -out EncryptedKeyMaterial_base64.txt');
    const material = await readFile(path.join(dir, 'KeyMaterial.bin'));
    const encrypted = await readFile(path.join(dir, 'EncryptedKeyMaterial_base64.txt'), 'utf8');
    secrets.push(material.toString('hex'), material.toString('base64'), encrypted);
    // Step 4.
    if (importWith === 'legacy') {
      await legacy.importKeyMaterial(new KMS.ImportKeyMaterialRequest({ keyId, encryptedKeyMaterial: encrypted, importToken: token }));
    } else {
      await importWith('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: encrypted, ImportToken: await readFile(path.join(dir, 'token.txt'), 'utf8') });
    }
    return { dir, material };
  }

  const OAEP_SHA256 =
    'openssl pkeyutl -encrypt -in KeyMaterial.bin -inkey PublicKey.bin -keyform DER -pubin -out EncryptedKeyMaterial.bin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256';

  /** Encrypt through the KMS, decrypt in the test with KeyMaterial.bin: the material in use is the one imported. */
  async function proveMaterialInUse(keyId: string, material: Buffer) {
    const context = { purpose: 'byok', tenant: 'acme' };
    const plain = await call('Encrypt', { KeyId: keyId, Plaintext: 'imported material in use' });
    const local = decryptBlobWithMaterial(plain.CiphertextBlob, material);
    expect(local.plaintext).toBe('imported material in use');
    expect(local.versionId).toBe(plain.KeyVersionId);
    const withContext = await call('Encrypt', { KeyId: keyId, Plaintext: 'with context', EncryptionContext: JSON.stringify(context) });
    expect(decryptBlobWithMaterial(withContext.CiphertextBlob, material, context).plaintext).toBe('with context');
    expect((await call('Decrypt', { CiphertextBlob: plain.CiphertextBlob })).Plaintext).toBe('imported material in use');
  }

  it('hardware key (HSM instance), RSAES_OAEP_SHA_256: PendingImport → Enabled, and the KMS encrypts with KeyMaterial.bin', async () => {
    const keyId = await createExternalKey('hsm');
    const before = (await call('DescribeKey', { KeyId: keyId })).KeyMetadata;
    expect(before).toMatchObject({ KeyState: 'PendingImport', Origin: 'EXTERNAL', ProtectionLevel: 'HSM', MaterialExpireTime: '' });
    expect((await sdkError(() => call('Encrypt', { KeyId: keyId, Plaintext: 'x' }))).code).toBe('Rejected.PendingImport');

    const { material } = await seedSteps(keyId, 'RSAES_OAEP_SHA_256', OAEP_SHA256);
    const after = (await call('DescribeKey', { KeyId: keyId })).KeyMetadata;
    expect(after).toMatchObject({ KeyState: 'Enabled', Origin: 'EXTERNAL', MaterialExpireTime: '' });
    await proveMaterialInUse(keyId, material);
    expect(await tokenObjects(after.PrimaryKeyVersion)).toBe(1);
  });

  it('software key (SOFTWARE instance), RSAES_OAEP_SHA_256, through @alicloud/kms20160120 1.2.0', async () => {
    const keyId = await createExternalKey('software');
    const { material } = await seedSteps(keyId, 'RSAES_OAEP_SHA_256', OAEP_SHA256, 'legacy');
    const described = (await call('DescribeKey', { KeyId: keyId })).KeyMetadata;
    expect(described).toMatchObject({ KeyState: 'Enabled', Origin: 'EXTERNAL', ProtectionLevel: 'SOFTWARE' });
    await proveMaterialInUse(keyId, material);
    // Stored sealed under the root key, never in clear.
    const version = await getVersion(server.kms.deps.db, described.PrimaryKeyVersion);
    expect(version?.sealedMaterial?.length).toBe(12 + 32 + 16);
    expect(version?.sealedMaterial?.includes(material)).toBe(false);
    expect(await tokenObjects(described.PrimaryKeyVersion)).toBe(0);
  });

  it('RSAES_PKCS1_V1_5 (deprecated, still offered): hardware and software keys', async () => {
    const pkcs1 = 'openssl pkeyutl -encrypt -in KeyMaterial.bin -inkey PublicKey.bin -keyform DER -pubin -out EncryptedKeyMaterial.bin -pkeyopt rsa_padding_mode:pkcs1';
    for (const tier of ['hsm', 'software'] as const) {
      const keyId = await createExternalKey(tier);
      const { material } = await seedSteps(keyId, 'RSAES_PKCS1_V1_5', pkcs1);
      await proveMaterialInUse(keyId, material);
    }
  });

  it('RSAES_OAEP_SHA_1 on a default key (the only type that offers it)', async () => {
    const keyId = await createExternalKey('default');
    const sha1 = 'openssl pkeyutl -encrypt -in KeyMaterial.bin -inkey PublicKey.bin -keyform DER -pubin -out EncryptedKeyMaterial.bin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 -pkeyopt rsa_mgf1_md:sha1';
    const { material } = await seedSteps(keyId, 'RSAES_OAEP_SHA_1', sha1);
    await proveMaterialInUse(keyId, material);
  });

  it('the PEM form of the public key works with -keyform PEM, as the seed notes', async () => {
    const keyId = await createExternalKey('hsm');
    const dir = await byokWorkDir();
    const { publicKey, token } = await importParams(keyId, 'RSAES_OAEP_SHA_256');
    await writeFile(path.join(dir, 'PublicKey.pem'), createPublicKey({ key: publicKey, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }));
    await sh(dir, 'openssl rand -out KeyMaterial.bin 32');
    await sh(dir, OAEP_SHA256.replace('PublicKey.bin -keyform DER', 'PublicKey.pem -keyform PEM'));
    await sh(dir, 'openssl enc -e -base64 -A -in EncryptedKeyMaterial.bin -out EncryptedKeyMaterial_base64.txt');
    const encrypted = await readFile(path.join(dir, 'EncryptedKeyMaterial_base64.txt'), 'utf8');
    await call('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: encrypted, ImportToken: token });
    await proveMaterialInUse(keyId, await readFile(path.join(dir, 'KeyMaterial.bin')));
  });
});

describe('GetParametersForImport', () => {
  it('returns a base64 DER RSA-2048 SubjectPublicKeyInfo, a token and TokenExpireTime 24 h ahead; every call a different pair', async () => {
    const keyId = await createExternalKey('hsm');
    const first = await importParams(keyId, 'RSAES_OAEP_SHA_256');
    const second = await importParams(keyId, 'RSAES_OAEP_SHA_256');
    expect(first.raw.KeyId).toBe(keyId);
    expect(first.raw.PublicKey).toMatch(/^MIIBIjANBgkqhkiG9w0BAQEF/);
    const key = createPublicKey({ key: first.publicKey, format: 'der', type: 'spki' });
    expect(key.asymmetricKeyType).toBe('rsa');
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(first.publicKey.equals(second.publicKey)).toBe(false);
    expect(first.token).not.toBe(second.token);
    const expires = Date.parse(first.raw.TokenExpireTime);
    expect(first.raw.TokenExpireTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Math.abs(expires - (Date.now() + 24 * 3600_000))).toBeLessThan(10_000);
  });

  it('offers the seed’s algorithms per key management type', async () => {
    const defaultKey = await createExternalKey('default');
    for (const algorithm of ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256', 'RSAES_PKCS1_V1_5'] as const) {
      await importParams(defaultKey, algorithm);
    }
    for (const tier of ['hsm', 'software'] as const) {
      const keyId = await createExternalKey(tier);
      await importParams(keyId, 'RSAES_OAEP_SHA_256');
      await importParams(keyId, 'RSAES_PKCS1_V1_5');
      const refused = await sdkError(() => importParams(keyId, 'RSAES_OAEP_SHA_1'));
      expect(refused.code).toBe('InvalidParameter');
      expect(refused.data.Message).toContain('RSAES_OAEP_SHA_1 is not available');
    }
  });

  it('refuses other specs and algorithms, keys with generated material, and PendingDeletion keys', async () => {
    const keyId = await createExternalKey('hsm');
    const spec = await sdkError(() => call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'EC_SM2', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' }));
    expect(spec.code).toBe('InvalidParameter');
    expect(spec.data.Message).toContain('WrappingKeySpec');
    const algorithm = await sdkError(() => call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'SM2PKE' }));
    expect(algorithm.code).toBe('InvalidParameter');
    const missing = await sdkError(() => call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048' }));
    expect(missing.code).toBe('MissingParameter');

    const generated = (await createKeyIn(call, server.hsmInstanceId)).keyId;
    const origin = await sdkError(() => importParams(generated, 'RSAES_OAEP_SHA_256'));
    expect(origin).toMatchObject({ code: 'Unsupported.Origin', statusCode: 400 });
    expect(origin.data.Message).toBe('This key origin is not valid for this api.');

    await updateKey(server.kms.deps.db, keyId, { state: 'PendingDeletion' });
    const deleting = await sdkError(() => importParams(keyId, 'RSAES_OAEP_SHA_256'));
    expect(deleting).toMatchObject({ code: 'Rejected.PendingDeletion', statusCode: 409 });
    expect((await sdkError(() => importParams('key-hzznotthere000000000000', 'RSAES_OAEP_SHA_256'))).code).toBe('Forbidden.KeyNotFound');
  });

  it('takes a pre-generated pair from the pool when it is warm (the pair existed before the call)', async () => {
    const { db } = server.kms.deps;
    await refillWrappingKeyPool(server.kms.deps);
    const { rows: pool } = await db.query<{ id: string; public_key_der: Buffer }>(
      'SELECT id, public_key_der FROM wrapping_keys WHERE key_id IS NULL ORDER BY created_at, id',
    );
    expect(pool.length).toBe(server.config.hsm.wrappingKeyPoolSize);
    const keyId = await createExternalKey('hsm');
    const started = performance.now();
    const { publicKey } = await importParams(keyId, 'RSAES_OAEP_SHA_256');
    const elapsed = performance.now() - started;
    const taken = pool.find((row) => row.public_key_der.equals(publicKey));
    expect(taken?.id).toBe(pool[0]?.id);
    const { rows } = await db.query<{ key_id: string; algorithm: string }>('SELECT key_id, algorithm FROM wrapping_keys WHERE id = $1', [taken?.id]);
    expect(rows[0]).toEqual({ key_id: keyId, algorithm: 'RSAES_OAEP_SHA_256' });
    const audit = await listAudit(db, { keyId, action: 'GetParametersForImport' });
    expect(audit[0]?.detail).toMatchObject({ wrappingKeyId: taken?.id, pooled: true });
    // Informational: a pooled answer needs no RSA generation.
    console.info(`GetParametersForImport with a warm pool: ${elapsed.toFixed(1)} ms`);
  });

  it('generates the pair in the HSM: the private half is a sensitive, non-extractable unwrap key', async () => {
    const keyId = await createExternalKey('hsm');
    const { token } = await importParams(keyId, 'RSAES_PKCS1_V1_5');
    const { rows } = await server.kms.deps.db.query<{ id: string }>('SELECT id FROM wrapping_keys WHERE key_id = $1', [keyId]);
    const id = rows[0]!.id;
    expect(decodeImportToken(token).payload).toMatchObject({ keyId, wrappingKeyId: id, algorithm: 'RSAES_PKCS1_V1_5' });
    await withTokenSession(server, (p11, session) => {
      const [privateKey] = findObjects(p11, session, m.privateKeyById(id));
      expect(privateKey).toBeDefined();
      const attrs = p11.C_GetAttributeValue(session, privateKey!, [
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_UNWRAP },
        { type: pkcs11js.CKA_SIGN },
        { type: pkcs11js.CKA_TOKEN },
      ]);
      expect(attrs.map((a) => (a.value as Buffer)[0])).toEqual([1, 0, 1, 0, 1]);
      expect(() => p11.C_GetAttributeValue(session, privateKey!, [{ type: pkcs11js.CKA_PRIVATE_EXPONENT }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
    });
  });
});

describe('ImportKeyMaterial: permanent binding and the uniform error', () => {
  let hsmKey: string;
  let hsmMaterial: Buffer;
  let oldCiphertext: string;

  beforeAll(async () => {
    hsmKey = await createExternalKey('hsm');
    hsmMaterial = randomBytes(32);
    await importMaterial(hsmKey, hsmMaterial, 'RSAES_OAEP_SHA_256');
    oldCiphertext = (await call('Encrypt', { KeyId: hsmKey, Plaintext: 'written before any re-import' })).CiphertextBlob;
  });

  it('re-imports the same material with a new token and another algorithm, keeping the one token object', async () => {
    const versionId = await versionOf(hsmKey);
    const fingerprint = (await primaryOf(hsmKey))?.materialFingerprint;
    await importMaterial(hsmKey, hsmMaterial, 'RSAES_PKCS1_V1_5');
    expect((await primaryOf(hsmKey))?.materialFingerprint?.equals(fingerprint!)).toBe(true);
    expect(await tokenObjects(versionId)).toBe(1);
    expect((await call('Decrypt', { CiphertextBlob: oldCiphertext })).Plaintext).toBe('written before any re-import');
    const fresh = await call('Encrypt', { KeyId: hsmKey, Plaintext: 'after re-import' });
    expect(decryptBlobWithMaterial(fresh.CiphertextBlob, hsmMaterial).plaintext).toBe('after re-import');
    const audit = await listAudit(server.kms.deps.db, { keyId: hsmKey, action: 'ImportKeyMaterial' });
    expect(audit.map((a) => a.detail)).toEqual([
      expect.objectContaining({ outcome: 'imported', target: 'token', firstImport: true, path: 'host-oaep-decode', wrappingAlgorithm: 'RSAES_OAEP_SHA_256' }),
      expect.objectContaining({ outcome: 'imported', target: 'fingerprint-only', firstImport: false, path: 'native', wrappingAlgorithm: 'RSAES_PKCS1_V1_5' }),
    ]);
  });

  it('refuses different material with InvalidKeyMaterial and changes nothing', async () => {
    const versionId = await versionOf(hsmKey);
    const before = await primaryOf(hsmKey);
    for (const algorithm of ['RSAES_OAEP_SHA_256', 'RSAES_PKCS1_V1_5'] as const) {
      const refused = await sdkError(() => importMaterial(hsmKey, randomBytes(32), algorithm, { KeyMaterialExpireUnix: Math.floor(Date.now() / 1000) + 3600 }));
      expect({ code: refused.code, message: refused.data.Message }).toEqual(UNIFORM);
    }
    expect((await getKey(server.kms.deps.db, hsmKey))?.state).toBe('Enabled');
    const after = await primaryOf(hsmKey);
    expect(after?.materialFingerprint?.equals(before!.materialFingerprint!)).toBe(true);
    expect(after?.materialExpireAt).toBeNull();
    expect(await tokenObjects(versionId)).toBe(1);
    expect((await call('Decrypt', { CiphertextBlob: oldCiphertext })).Plaintext).toBe('written before any re-import');
    const fresh = await call('Encrypt', { KeyId: hsmKey, Plaintext: 'still the first material' });
    expect(decryptBlobWithMaterial(fresh.CiphertextBlob, hsmMaterial).plaintext).toBe('still the first material');
    const refusals = (await listAudit(server.kms.deps.db, { keyId: hsmKey, action: 'ImportKeyMaterial' })).filter((a) => a.detail?.outcome === 'refused');
    expect(refusals.map((a) => a.detail?.reason)).toEqual(['material-differs-from-bound-material', 'material-differs-from-bound-material']);
  });

  it('refuses different material on a software key too, which still decrypts its old ciphertexts', async () => {
    const keyId = await createExternalKey('software');
    const material = randomBytes(32);
    await importMaterial(keyId, material);
    const old = (await call('Encrypt', { KeyId: keyId, Plaintext: 'software old' })).CiphertextBlob;
    const sealedBefore = (await getVersion(server.kms.deps.db, await versionOf(keyId)))?.sealedMaterial;
    const refused = await sdkError(() => importMaterial(keyId, randomBytes(32), 'RSAES_PKCS1_V1_5'));
    expect({ code: refused.code, message: refused.data.Message }).toEqual(UNIFORM);
    expect((await getVersion(server.kms.deps.db, await versionOf(keyId)))?.sealedMaterial?.equals(sealedBefore!)).toBe(true);
    expect((await call('Decrypt', { CiphertextBlob: old })).Plaintext).toBe('software old');
    await importMaterial(keyId, material, 'RSAES_PKCS1_V1_5');
    expect((await call('Decrypt', { CiphertextBlob: old })).Plaintext).toBe('software old');
  });

  it('answers every bad ciphertext with one code and one message (no oracle), on both unwrap paths', async () => {
    const keyId = await createExternalKey('hsm');
    const material = randomBytes(32);
    const failures: Array<{ case: string; code: string; message: string }> = [];
    const attempt = async (label: string, params: Record<string, unknown>) => {
      const e = await sdkError(() => call('ImportKeyMaterial', { KeyId: keyId, ...params }));
      failures.push({ case: label, code: e.code, message: e.data.Message });
      expect(e.statusCode).toBe(400);
    };
    for (const algorithm of ['RSAES_OAEP_SHA_256', 'RSAES_PKCS1_V1_5'] as const) {
      const a = await importParams(keyId, algorithm);
      const b = await importParams(keyId, algorithm);
      const good = wrapKeyMaterial(a.publicKey, algorithm, material);
      const flipped = Buffer.from(good);
      flipped[100] = (flipped[100] ?? 0) ^ 0x01;
      const flippedLast = Buffer.from(good);
      flippedLast[255] = (flippedLast[255] ?? 0) ^ 0x80;
      await attempt(`${algorithm} truncated`, { EncryptedKeyMaterial: good.subarray(0, 200).toString('base64'), ImportToken: a.token });
      await attempt(`${algorithm} one byte short`, { EncryptedKeyMaterial: good.subarray(1).toString('base64'), ImportToken: a.token });
      await attempt(`${algorithm} bit flipped`, { EncryptedKeyMaterial: flipped.toString('base64'), ImportToken: a.token });
      await attempt(`${algorithm} last bit flipped`, { EncryptedKeyMaterial: flippedLast.toString('base64'), ImportToken: a.token });
      await attempt(`${algorithm} another download's public key`, { EncryptedKeyMaterial: good.toString('base64'), ImportToken: b.token });
      await attempt(`${algorithm} 16-byte material for an AES-256 key`, {
        EncryptedKeyMaterial: wrapKeyMaterial(a.publicKey, algorithm, randomBytes(16)).toString('base64'),
        ImportToken: a.token,
      });
      await attempt(`${algorithm} 48-byte material`, {
        EncryptedKeyMaterial: wrapKeyMaterial(a.publicKey, algorithm, randomBytes(48)).toString('base64'),
        ImportToken: a.token,
      });
      await attempt(`${algorithm} not base64`, { EncryptedKeyMaterial: '%%%not-base64%%%', ImportToken: a.token });
    }
    expect(failures.length).toBe(16);
    for (const failure of failures) expect({ case: failure.case, code: failure.code, message: failure.message }).toEqual({ case: failure.case, ...UNIFORM });
    // Nothing happened to the key: still waiting for its material, no object in the token.
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('PendingImport');
    expect(await tokenObjects(await versionOf(keyId))).toBe(0);
    expect((await primaryOf(keyId))?.materialFingerprint).toBeNull();
    // And the right ciphertext still works afterwards.
    await importMaterial(keyId, material);
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('Enabled');
  });

  it('refuses a token issued for another key, a tampered token and a past KeyMaterialExpireUnix', async () => {
    const keyA = await createExternalKey('hsm');
    const keyB = await createExternalKey('hsm');
    const material = randomBytes(32);
    const forB = await importParams(keyB, 'RSAES_OAEP_SHA_256');
    const encrypted = wrapKeyMaterial(forB.publicKey, 'RSAES_OAEP_SHA_256', material).toString('base64');
    const otherKey = await sdkError(() => call('ImportKeyMaterial', { KeyId: keyA, EncryptedKeyMaterial: encrypted, ImportToken: forB.token }));
    expect(otherKey).toMatchObject({ code: 'InvalidImportToken', statusCode: 400 });
    expect(otherKey.data.Message).toBe('import token is invalid.');

    const raw = Buffer.from(forB.token, 'base64url');
    for (const index of [5, raw.length - 1]) {
      const tampered = Buffer.from(raw);
      tampered[index] = (tampered[index] ?? 0) ^ 0x01;
      const e = await sdkError(() => call('ImportKeyMaterial', { KeyId: keyB, EncryptedKeyMaterial: encrypted, ImportToken: tampered.toString('base64url') }));
      expect(e.code).toBe('InvalidImportToken');
    }
    expect((await sdkError(() => call('ImportKeyMaterial', { KeyId: keyB, EncryptedKeyMaterial: encrypted, ImportToken: 'garbage' }))).code).toBe('InvalidImportToken');

    const past = await sdkError(() =>
      call('ImportKeyMaterial', { KeyId: keyB, EncryptedKeyMaterial: encrypted, ImportToken: forB.token, KeyMaterialExpireUnix: Math.floor(Date.now() / 1000) - 60 }),
    );
    expect(past.code).toBe('InvalidParameter');
    expect(past.data.Message).toContain('KeyMaterialExpireUnix');
    expect((await call('DescribeKey', { KeyId: keyB })).KeyMetadata.KeyState).toBe('PendingImport');

    // With the right pairing the same token imports, and a future expiry shows in DescribeKey.
    const expireUnix = Math.floor(Date.now() / 1000) + 7 * 86_400;
    await call('ImportKeyMaterial', { KeyId: keyB, EncryptedKeyMaterial: encrypted, ImportToken: forB.token, KeyMaterialExpireUnix: expireUnix });
    const described = (await call('DescribeKey', { KeyId: keyB })).KeyMetadata;
    expect(described.MaterialExpireTime).toBe(new Date(expireUnix * 1000).toISOString().replace('.000Z', 'Z'));
    // The token is reusable within its 24 hours (seed 000): the same token again, expiry reset to never.
    await call('ImportKeyMaterial', { KeyId: keyB, EncryptedKeyMaterial: encrypted, ImportToken: forB.token, KeyMaterialExpireUnix: 0 });
    expect((await call('DescribeKey', { KeyId: keyB })).KeyMetadata.MaterialExpireTime).toBe('');
  });

  it('refuses import into a PendingDeletion key and into a key with generated material', async () => {
    const keyId = await createExternalKey('software');
    const { publicKey, token } = await importParams(keyId, 'RSAES_OAEP_SHA_256');
    await updateKey(server.kms.deps.db, keyId, { state: 'PendingDeletion' });
    const encrypted = wrapKeyMaterial(publicKey, 'RSAES_OAEP_SHA_256', randomBytes(32)).toString('base64');
    const e = await sdkError(() => call('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: encrypted, ImportToken: token }));
    expect(e.code).toBe('Rejected.PendingDeletion');
    const generated = await createKeyId(call);
    const origin = await sdkError(() => call('ImportKeyMaterial', { KeyId: generated, EncryptedKeyMaterial: encrypted, ImportToken: token }));
    expect(origin.code).toBe('Unsupported.Origin');
  });

  it('serialises concurrent imports into one key: of two different materials exactly one binds', async () => {
    for (let round = 0; round < 3; round++) {
      const keyId = await createExternalKey('hsm');
      const materials = [randomBytes(32), randomBytes(32)];
      // Both downloads first, so that the two imports reach the server together.
      const requests = await Promise.all(
        materials.map(async (material) => {
          const { publicKey, token } = await importParams(keyId, 'RSAES_PKCS1_V1_5');
          return { KeyId: keyId, EncryptedKeyMaterial: wrapKeyMaterial(publicKey, 'RSAES_PKCS1_V1_5', material).toString('base64'), ImportToken: token };
        }),
      );
      const results = await Promise.allSettled(requests.map((request) => call('ImportKeyMaterial', request)));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const won = results.findIndex((r) => r.status === 'fulfilled');
      const lost = results[1 - won];
      expect(lost?.status === 'rejected' && (lost.reason as { data?: { Code?: string } }).data?.Code).toBe('InvalidKeyMaterial');
      expect(await tokenObjects(await versionOf(keyId))).toBe(1);
      const encrypted = await call('Encrypt', { KeyId: keyId, Plaintext: 'winner' });
      expect(decryptBlobWithMaterial(encrypted.CiphertextBlob, materials[won]!).plaintext).toBe('winner');
    }
  });

  it('takes 16 bytes for an Aliyun_AES_128 hardware key and refuses 32', async () => {
    const keyId = await createExternalKey('hsm', { KeySpec: 'Aliyun_AES_128' });
    const tooLong = await sdkError(() => importMaterial(keyId, randomBytes(32), 'RSAES_PKCS1_V1_5'));
    expect({ code: tooLong.code, message: tooLong.data.Message }).toEqual(UNIFORM);
    const material = randomBytes(16);
    await importMaterial(keyId, material, 'RSAES_PKCS1_V1_5');
    const encrypted = await call('Encrypt', { KeyId: keyId, Plaintext: 'aes-128' });
    expect(decryptBlobWithMaterial(encrypted.CiphertextBlob, material).plaintext).toBe('aes-128');
  });
});

describe('DeleteKeyMaterial', () => {
  it('hardware key: destroys the token object, PendingImport, fingerprint kept; the same material revives old ciphertexts', async () => {
    const keyId = await createExternalKey('hsm');
    const material = randomBytes(32);
    await importMaterial(keyId, material);
    const versionId = await versionOf(keyId);
    const old = (await call('Encrypt', { KeyId: keyId, Plaintext: 'before deletion' })).CiphertextBlob;
    const fingerprint = (await primaryOf(keyId))?.materialFingerprint;

    await legacyClient(server.endpoint, server.admin).deleteKeyMaterial(new KMS.DeleteKeyMaterialRequest({ keyId }));
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('PendingImport');
    expect(await tokenObjects(versionId)).toBe(0);
    expect((await sdkError(() => call('Decrypt', { CiphertextBlob: old }))).code).toBe('Rejected.PendingImport');
    expect((await sdkError(() => call('Encrypt', { KeyId: keyId, Plaintext: 'x' }))).code).toBe('Rejected.PendingImport');
    expect((await primaryOf(keyId))?.materialFingerprint?.equals(fingerprint!)).toBe(true);

    // Seed 000: bound forever — other material is still refused, and leaves no object behind.
    const other = await sdkError(() => importMaterial(keyId, randomBytes(32)));
    expect({ code: other.code, message: other.data.Message }).toEqual(UNIFORM);
    expect(await tokenObjects(versionId)).toBe(0);
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('PendingImport');

    await importMaterial(keyId, material, 'RSAES_PKCS1_V1_5');
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('Enabled');
    expect(await tokenObjects(versionId)).toBe(1);
    expect((await call('Decrypt', { CiphertextBlob: old })).Plaintext).toBe('before deletion');
  });

  it('software key: erases the sealed blob and forgets the cached material; re-import revives old ciphertexts', async () => {
    const keyId = await createExternalKey('software');
    const material = randomBytes(32);
    await importMaterial(keyId, material);
    const versionId = await versionOf(keyId);
    const old = (await call('Encrypt', { KeyId: keyId, Plaintext: 'software before deletion' })).CiphertextBlob;
    await call('DeleteKeyMaterial', { KeyId: keyId });
    const version = await getVersion(server.kms.deps.db, versionId);
    expect(version).toMatchObject({ hasMaterial: false, sealedMaterial: null });
    expect((await sdkError(() => call('Decrypt', { CiphertextBlob: old }))).code).toBe('Rejected.PendingImport');
    await importMaterial(keyId, material);
    expect((await call('Decrypt', { CiphertextBlob: old })).Plaintext).toBe('software before deletion');
  });

  it('keeps a PendingDeletion key PendingDeletion', async () => {
    const keyId = await createExternalKey('hsm');
    await importMaterial(keyId, randomBytes(32));
    const versionId = await versionOf(keyId);
    await updateKey(server.kms.deps.db, keyId, { state: 'PendingDeletion' });
    await call('DeleteKeyMaterial', { KeyId: keyId });
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('PendingDeletion');
    expect(await tokenObjects(versionId)).toBe(0);
    expect((await getVersion(server.kms.deps.db, versionId))?.hasMaterial).toBe(false);
  });

  it('refuses a key whose material KMS generated (it could never come back)', async () => {
    const generated = (await createKeyIn(call, server.hsmInstanceId)).keyId;
    expect((await sdkError(() => call('DeleteKeyMaterial', { KeyId: generated }))).code).toBe('Unsupported.Origin');
    expect((await call('Encrypt', { KeyId: generated, Plaintext: 'still here' })).KeyId).toBe(generated);
  });
});

describe('the imported HSM object', () => {
  let versionIds: { native: string; host: string };

  beforeAll(async () => {
    const nativeKey = await createExternalKey('hsm');
    await importMaterial(nativeKey, randomBytes(32), 'RSAES_PKCS1_V1_5');
    const hostKey = await createExternalKey('hsm');
    await importMaterial(hostKey, randomBytes(32), 'RSAES_OAEP_SHA_256');
    versionIds = { native: await versionOf(nativeKey), host: await versionOf(hostKey) };
    const paths = async (keyId: string) => (await listAudit(server.kms.deps.db, { keyId, action: 'ImportKeyMaterial' }))[0]?.detail?.path;
    expect(await paths(nativeKey)).toBe('native');
    expect(await paths(hostKey)).toBe('host-oaep-decode');
  });

  it('is a sensitive, non-extractable token key on both unwrap paths (checked through PKCS#11)', async () => {
    for (const versionId of Object.values(versionIds)) {
      await withTokenSession(server, (p11, session) => {
        const [key] = findObjects(p11, session, m.secretKeyById(versionId));
        expect(key).toBeDefined();
        const attrs = p11.C_GetAttributeValue(session, key!, [
          { type: pkcs11js.CKA_SENSITIVE },
          { type: pkcs11js.CKA_EXTRACTABLE },
          { type: pkcs11js.CKA_TOKEN },
          { type: pkcs11js.CKA_PRIVATE },
          { type: pkcs11js.CKA_KEY_TYPE },
          { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
        ]);
        expect((attrs[0]?.value as Buffer)[0]).toBe(1); // CKA_SENSITIVE
        expect((attrs[1]?.value as Buffer)[0]).toBe(0); // CKA_EXTRACTABLE
        expect((attrs[2]?.value as Buffer)[0]).toBe(1); // CKA_TOKEN
        expect((attrs[3]?.value as Buffer)[0]).toBe(1); // CKA_PRIVATE
        expect((attrs[4]?.value as Buffer).readUInt32LE(0)).toBe(pkcs11js.CKK_AES);
        // PKCS#11 v2.40 §4.9: an unwrapped or created key was outside the token once, so it is
        // never "never extractable"; what protects it is CKA_EXTRACTABLE=false from now on.
        expect((attrs[5]?.value as Buffer)[0]).toBe(0); // CKA_NEVER_EXTRACTABLE
        expect(() => p11.C_GetAttributeValue(session, key!, [{ type: pkcs11js.CKA_VALUE }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
        const wrapper = p11.C_GenerateKey(session, m.aesKeyGen, m.aesKeyTemplate({ token: false, valueLength: 32, wrap: true }));
        expect(() => p11.C_WrapKey(session, m.aesKeyWrapPad, wrapper, key!, Buffer.alloc(64))).toThrow(/CKR_KEY_UNEXTRACTABLE/);
      });
    }
  });

  it('pkcs11-tool --list-objects shows it sensitive and not extractable, without a value', async () => {
    const { stdout } = await promisify(execFile)(
      'pkcs11-tool',
      ['--module', server.config.hsm.modulePath, '--token-label', server.token.label, '--login', '--pin', server.token.userPin, '--list-objects', '--type', 'secrkey'],
      { env: { ...process.env, SOFTHSM2_CONF: server.token.confPath } },
    );
    for (const versionId of Object.values(versionIds)) {
      const block = stdout.split(/\n(?=Secret Key Object)/).find((b) => b.includes(`label:      ${versionId}`));
      expect(block, stdout).toBeDefined();
      expect(block).toMatch(/^Secret Key Object; AES/);
      // pkcs11-tool prints "extractable" for CKA_EXTRACTABLE=true; an imported key is never
      // "never extractable" (PKCS#11 §4.9), so "sensitive" alone is the strongest it shows.
      const access = /Access:\s+(.*)/.exec(block ?? '')?.[1] ?? '';
      expect(access.split(', ')).toContain('sensitive');
      expect(access.split(', ')).not.toContain('extractable');
      expect(block).not.toMatch(/[Vv]alue/);
    }
  });
});

describe('strict import mode (KMS_IMPORT_STRICT=true) on SoftHSM2 2.6.1', () => {
  let strict: TestServer;

  beforeAll(async () => {
    strict = await startServer({ env: { KMS_IMPORT_STRICT: 'true' } });
  });

  afterAll(async () => {
    await strict?.stop();
  });

  it('refuses RSAES_OAEP_SHA_256 at GetParametersForImport with a message naming the algorithm and the reason', async () => {
    const strictCall = openApiClient(strict.endpoint, strict.admin);
    const keyId = (await createKeyIn(strictCall, strict.hsmInstanceId, { Origin: 'EXTERNAL' })).keyId;
    const refused = await sdkError(() => strictCall('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' }));
    expect(refused).toMatchObject({ code: 'Rejected.UnsupportedOperation', statusCode: 400 });
    expect(refused.data.Message).toContain('RSAES_OAEP_SHA_256');
    expect(refused.data.Message).toContain('KMS_IMPORT_STRICT');
    expect(refused.data.Message).toContain('Use RSAES_PKCS1_V1_5');

    // What the token does natively still works, and its pairs cannot do raw RSA.
    const params = await strictCall('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_PKCS1_V1_5' });
    const material = randomBytes(32);
    const encrypted = wrapKeyMaterial(Buffer.from(params.PublicKey, 'base64'), 'RSAES_PKCS1_V1_5', material).toString('base64');
    await strictCall('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: encrypted, ImportToken: params.ImportToken });
    const sealed = await strictCall('Encrypt', { KeyId: keyId, Plaintext: 'strict' });
    expect(decryptBlobWithMaterial(sealed.CiphertextBlob, material).plaintext).toBe('strict');
    const { rows } = await strict.kms.deps.db.query<{ raw_decrypt: boolean }>('SELECT raw_decrypt FROM wrapping_keys WHERE key_id = $1', [keyId]);
    expect(rows).toEqual([{ raw_decrypt: false }]);
    const health = (await (await fetch(`http://${strict.endpoint}/health`)).json()) as { hsm: { importStrict: boolean } };
    expect(health.hsm.importStrict).toBe(true);
  });
});

describe('logs', () => {
  it('never contain key material (hex or base64), encrypted material, import tokens’ secrets or the PIN', () => {
    const all = server.logs.join('\n');
    expect(all.length).toBeGreaterThan(0);
    expect(secrets.length).toBeGreaterThan(20);
    for (const secret of [...secrets, server.token.userPin, server.token.soPin, server.admin.accessKeySecret]) {
      expect(all.includes(secret), 'a secret appeared in the logs').toBe(false);
    }
  });
});
