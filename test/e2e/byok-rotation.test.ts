import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { wrapKeyMaterial } from '../../src/domain/client-wrap.js';
import { isoSeconds } from '../../src/domain/dates.js';
import { listAudit } from '../../src/store/audit.js';
import { decryptBlobWithMaterial } from '../helpers/byok.js';
import { createInstanceIn, createKeyIn } from '../helpers/fixtures.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Seed 002, BYOK rotation of a SOFTWARE key: new material is an explicit import
 * (ImportType=NEW_KEY_MATERIAL, an hsm-kms extension) that makes a PendingRotation version;
 * no second one until it is rotated in; CreateKeyVersion rotates it in. Seed 000's binding
 * holds per version: different material never replaces a version's material.
 */
const DAY = 86_400_000;
let server: TestServer;
let call: CallApi;
const clock = new ManualClock(new Date(Math.floor(Date.now() / 1000) * 1000));
/** Every material this file handled, checked against the server's logs at the end. */
const secrets: string[] = [];

beforeAll(async () => {
  server = await startServer({ clock });
  call = openApiClient(server.endpoint, server.admin);
});

afterAll(async () => {
  if (server) {
    const logs = server.logs.join('\n');
    for (const secret of secrets) expect(logs).not.toContain(secret);
  }
  await server?.stop();
});

function material(): Buffer {
  const m = randomBytes(32);
  secrets.push(m.toString('hex'), m.toString('base64'));
  return m;
}

async function importMaterial(keyId: string, m: Buffer, extra: Record<string, unknown> = {}) {
  const params = await call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
  const encrypted = wrapKeyMaterial(Buffer.from(params.PublicKey as string, 'base64'), 'RSAES_OAEP_SHA_256', m).toString('base64');
  secrets.push(encrypted);
  return call('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: encrypted, ImportToken: params.ImportToken, ...extra });
}

const NEW = { ImportType: 'NEW_KEY_MATERIAL' } as const;
const describeKey = async (keyId: string): Promise<Record<string, any>> => (await call('DescribeKey', { KeyId: keyId })).KeyMetadata;
async function versionsOf(keyId: string): Promise<Array<{ KeyVersionId: string; CreationDate: string; KeyVersionState: string }>> {
  return (await call('ListKeyVersions', { KeyId: keyId, PageSize: 100 })).KeyVersions.KeyVersion;
}
const encrypt = async (keyId: string, plaintext: string) => {
  const r = await call('Encrypt', { KeyId: keyId, Plaintext: plaintext });
  return { blob: r.CiphertextBlob as string, versionId: r.KeyVersionId as string };
};
const decrypt = async (blob: string) => {
  const r = await call('Decrypt', { CiphertextBlob: blob });
  return { plaintext: r.Plaintext as string, versionId: r.KeyVersionId as string };
};
const usedQuota = async (instanceId: string) =>
  ((await call('GetKmsInstanceQuotaInfos', { KmsInstanceId: instanceId, ResourceType: 'key' })).KmsInstanceQuotaInfos[0] as { UsedQuantity: number }).UsedQuantity;

describe('SOFTWARE BYOK key: new material → PendingRotation → rotate in', () => {
  it('imports new material as a pending version, refuses a second one, promotes it, and both ciphertexts decrypt, also locally with their own material', async () => {
    const instanceId = await createInstanceIn(server, { type: 'SOFTWARE', keyQuota: 10, qps: 1000 });
    const keyId = (await createKeyIn(call, instanceId, { Origin: 'EXTERNAL' })).keyId;
    const m1 = material();
    const m2 = material();
    const m3 = material();

    // NEW_KEY_MATERIAL needs the key's first material.
    const tooEarly = await sdkError(() => importMaterial(keyId, m1, NEW));
    expect([tooEarly.code, tooEarly.statusCode]).toEqual(['Rejected.PendingImport', 409]);
    await importMaterial(keyId, m1);
    const [v1] = await versionsOf(keyId);
    const c1 = await encrypt(keyId, 'under the first material');
    expect(c1.versionId).toBe(v1!.KeyVersionId);

    // Nothing to rotate in yet: the message says how.
    const nothing = await sdkError(() => call('CreateKeyVersion', { KeyId: keyId }));
    expect([nothing.code, nothing.statusCode]).toEqual(['Rejected.UnsupportedOperation', 400]);
    expect(nothing.message).toContain('ImportType=NEW_KEY_MATERIAL');

    // Seed 000 stays: different material into the existing version is refused, nothing changes.
    const before = await describeKey(keyId);
    const different = await sdkError(() => importMaterial(keyId, m2));
    expect([different.code, different.statusCode]).toEqual(['InvalidKeyMaterial', 400]);
    expect(await describeKey(keyId)).toEqual(before);
    expect(await versionsOf(keyId)).toHaveLength(1);

    // New material: a second version, PendingRotation, with its own MaterialExpireTime; one quota unit.
    clock.advance(DAY);
    const importedAt = clock.now();
    const expireUnix = Math.floor(importedAt.getTime() / 1000) + 90 * 86_400;
    await importMaterial(keyId, m2, { ...NEW, KeyMaterialExpireUnix: expireUnix });
    const pendingList = await versionsOf(keyId);
    expect(pendingList.map((v) => v.KeyVersionState)).toEqual(['Enabled', 'PendingRotation']);
    const v2 = pendingList[1]!;
    expect(v2.CreationDate).toBe(isoSeconds(importedAt));
    expect(await describeKey(keyId)).toEqual(before);
    expect((await encrypt(keyId, 'still v1')).versionId).toBe(v1!.KeyVersionId);
    expect(await usedQuota(instanceId)).toBe(2);
    const described = await call('DescribeKeyVersion', { KeyId: keyId, KeyVersionId: v2.KeyVersionId });
    expect(described.KeyVersion.KeyVersionState).toBe('PendingRotation');

    // A second new-material import is refused until that one is rotated in.
    const second = await sdkError(() => importMaterial(keyId, m3, NEW));
    expect([second.code, second.statusCode]).toEqual(['Rejected.PendingRotation', 409]);
    expect(await versionsOf(keyId)).toHaveLength(2);
    expect(await usedQuota(instanceId)).toBe(2);

    // Rotate it in: primary, Enabled, LastRotationDate = now; the key's expiry is v2's now.
    clock.advance(DAY);
    const rotatedAt = clock.now();
    const rotated = (await call('CreateKeyVersion', { KeyId: keyId })).KeyVersion;
    expect(rotated).toEqual({ KeyId: keyId, KeyVersionId: v2.KeyVersionId, CreationDate: isoSeconds(importedAt) });
    const after = await describeKey(keyId);
    expect(after).toMatchObject({
      PrimaryKeyVersion: v2.KeyVersionId,
      LastRotationDate: isoSeconds(rotatedAt),
      KeyState: 'Enabled',
      AutomaticRotation: 'Disabled',
      MaterialExpireTime: isoSeconds(new Date(expireUnix * 1000)),
    });
    expect((await versionsOf(keyId)).map((v) => v.KeyVersionState)).toEqual(['Enabled', 'Enabled']);
    expect(await usedQuota(instanceId)).toBe(2);

    const c2 = await encrypt(keyId, 'under the second material');
    expect(c2.versionId).toBe(v2.KeyVersionId);
    expect(await decrypt(c1.blob)).toEqual({ plaintext: 'under the first material', versionId: v1!.KeyVersionId });
    expect(await decrypt(c2.blob)).toEqual({ plaintext: 'under the second material', versionId: v2.KeyVersionId });
    // Each ciphertext is under its own version's material, and only that one.
    expect(decryptBlobWithMaterial(c1.blob, m1)).toEqual({ versionId: v1!.KeyVersionId, plaintext: 'under the first material' });
    expect(decryptBlobWithMaterial(c2.blob, m2)).toEqual({ versionId: v2.KeyVersionId, plaintext: 'under the second material' });
    expect(() => decryptBlobWithMaterial(c2.blob, m1)).toThrow();

    // Material some version already has is not new (the uniform error); a third material is.
    const reused = await sdkError(() => importMaterial(keyId, m1, NEW));
    expect([reused.code, reused.data.Message]).toEqual(['InvalidKeyMaterial', 'key material is invalid.']);
    await importMaterial(keyId, m3, NEW);
    expect((await versionsOf(keyId)).map((v) => v.KeyVersionState)).toEqual(['Enabled', 'Enabled', 'PendingRotation']);

    // DeleteKeyMaterial removes every version's material; each re-import revives its own version.
    await call('DeleteKeyMaterial', { KeyId: keyId });
    expect((await describeKey(keyId)).KeyState).toBe('PendingImport');
    expect((await sdkError(() => decrypt(c1.blob))).code).toBe('Rejected.PendingImport');
    await importMaterial(keyId, m1);
    // v1 has its material back, but the key follows its primary (v2), still without material.
    expect((await describeKey(keyId)).KeyState).toBe('PendingImport');
    await importMaterial(keyId, m2);
    expect((await describeKey(keyId)).KeyState).toBe('Enabled');
    expect(await decrypt(c1.blob)).toEqual({ plaintext: 'under the first material', versionId: v1!.KeyVersionId });
    expect(await decrypt(c2.blob)).toEqual({ plaintext: 'under the second material', versionId: v2.KeyVersionId });
    // The pending version lost its material too: it cannot be rotated in until m3 comes back.
    const empty = await sdkError(() => call('CreateKeyVersion', { KeyId: keyId }));
    expect(empty.code).toBe('Rejected.UnsupportedOperation');
    expect(empty.message).toContain('Import the same material again');
    await importMaterial(keyId, m3);
    const v3 = (await call('CreateKeyVersion', { KeyId: keyId })).KeyVersion.KeyVersionId as string;
    expect((await encrypt(keyId, 'v3')).versionId).toBe(v3);
    expect(await usedQuota(instanceId)).toBe(3);

    const audit = await listAudit(server.kms.deps.db, { keyId, action: 'ImportKeyMaterial' });
    expect(audit.some((e) => e.detail?.reason === 'new-material-already-bound-to-a-version')).toBe(true);
  });

  it('at the quota limit the new-material import is Rejected.LimitExceeded and changes nothing', async () => {
    const instanceId = await createInstanceIn(server, { type: 'SOFTWARE', keyQuota: 1, qps: 1000 });
    const keyId = (await createKeyIn(call, instanceId, { Origin: 'EXTERNAL' })).keyId;
    await importMaterial(keyId, material());
    const refused = await sdkError(() => importMaterial(keyId, material(), NEW));
    expect([refused.code, refused.statusCode]).toEqual(['Rejected.LimitExceeded', 400]);
    expect(await versionsOf(keyId)).toHaveLength(1);
  });
});

describe('keys whose material cannot be rotated by import', () => {
  it.each([
    ['HSM BYOK', 'hsm'],
    ['default BYOK', 'default'],
  ] as const)('%s: NEW_KEY_MATERIAL and CreateKeyVersion are Rejected.UnsupportedOperation; nothing changes', async (_name, tier) => {
    const keyId = (await call('CreateKey', { Origin: 'EXTERNAL', ...(tier === 'hsm' ? { DKMSInstanceId: server.hsmInstanceId } : {}) })).KeyMetadata.KeyId as string;
    await importMaterial(keyId, material());
    const before = await describeKey(keyId);
    const newMaterial = await sdkError(() => importMaterial(keyId, material(), NEW));
    expect([newMaterial.code, newMaterial.statusCode]).toEqual(['Rejected.UnsupportedOperation', 400]);
    expect(newMaterial.message).toContain('NEW_KEY_MATERIAL is not available for this key');
    const manual = await sdkError(() => call('CreateKeyVersion', { KeyId: keyId }));
    expect([manual.code, manual.statusCode]).toEqual(['Rejected.UnsupportedOperation', 400]);
    expect(await describeKey(keyId)).toEqual(before);
    expect(await versionsOf(keyId)).toHaveLength(1);
  });

  it('generated keys rotate with CreateKeyVersion, not by import (Unsupported.Origin)', async () => {
    const keyId = (await createKeyIn(call, server.softwareInstanceId)).keyId;
    const refused = await sdkError(() => call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' }));
    expect(refused.code).toBe('Unsupported.Origin');
  });

  it('an unknown ImportType is InvalidParameter', async () => {
    const keyId = (await createKeyIn(call, server.softwareInstanceId, { Origin: 'EXTERNAL' })).keyId;
    const error = await sdkError(() => importMaterial(keyId, material(), { ImportType: 'new_key_material' }));
    expect([error.code, error.statusCode]).toEqual(['InvalidParameter', 400]);
    expect(error.message).toContain('ImportType');
  });
});
