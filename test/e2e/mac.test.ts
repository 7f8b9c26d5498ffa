import { execFile } from 'node:child_process';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAC_ALGORITHMS, type MacAlgorithm, macHash } from '../../src/domain/mac.js';
import { MAC_HASH_BYTES } from '../../src/domain/key-spec.js';
import * as m from '../../src/hsm/pkcs11/mechanisms.js';
import { findObjects } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import { reconcileHsmObjects } from '../../src/services/reconciler.js';
import { getVersion } from '../../src/store/versions.js';
import { type CreatedKey, createKeyIn, instanceOfTier } from '../helpers/fixtures.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';
import { withTokenSession } from '../helpers/token-session.js';

/**
 * Issue 15, MAC keys through the real SDK transport on both tiers: GenerateMac/VerifyMac
 * round trips, proof that the MAC is HMAC of the message (against node:crypto, for key values
 * the test knows), the HSM-tier keys' protection, and the 4xx answers.
 */
const run = promisify(execFile);
let server: TestServer;
let call: CallApi;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
});

afterAll(async () => {
  await server?.stop();
});

const TIERS = ['HSM', 'SOFTWARE'] as const;
type Tier = (typeof TIERS)[number];
const SPEC_OF: Record<MacAlgorithm, string> = {
  HMAC_SHA_224: 'HMAC_SHA224',
  HMAC_SHA_256: 'HMAC_SHA256',
  HMAC_SHA_384: 'HMAC_SHA384',
  HMAC_SHA_512: 'HMAC_SHA512',
};

async function createMacKey(tier: Tier, keySpec: string): Promise<CreatedKey> {
  // No KeyUsage: GENERATE/VERIFY_MAC is a MAC spec's default (and only) usage.
  const created = await createKeyIn(call, instanceOfTier(server, tier), { KeySpec: keySpec });
  expect(created.metadata).toMatchObject({ ProtectionLevel: tier, KeySpec: keySpec, KeyUsage: 'GENERATE/VERIFY_MAC' });
  return created;
}

const b64 = (b: Buffer) => b.toString('base64');

describe.each(TIERS)('%s tier: GenerateMac / VerifyMac', (tier) => {
  it('the token was probed for every HMAC hash (SoftHSM2 has all four)', () => {
    const caps = server.kms.deps.hsm.info().capabilities;
    expect([caps.hmacSha224, caps.hmacSha256, caps.hmacSha384, caps.hmacSha512]).toEqual([true, true, true, true]);
  });

  it.each(MAC_ALGORITHMS)('%s: round trip; a flipped MAC, a truncated one and another message verify false', async (algorithm) => {
    const key = await createMacKey(tier, SPEC_OF[algorithm]);
    const message = randomBytes(100);
    const answer = await call('GenerateMac', { KeyId: key.keyId, Algorithm: algorithm, Message: b64(message) });
    expect(Object.keys(answer).sort()).toEqual(['Algorithm', 'KeyId', 'KeyVersionId', 'Mac', 'RequestId']);
    expect(answer).toMatchObject({ KeyId: key.keyId, KeyVersionId: key.versionId, Algorithm: algorithm });
    const mac = Buffer.from(answer.Mac as string, 'base64');
    expect(mac).toHaveLength(MAC_HASH_BYTES[macHash(algorithm)]);
    // Deterministic: the same message gives the same MAC.
    expect((await call('GenerateMac', { KeyId: key.keyId, Algorithm: algorithm, Message: b64(message) })).Mac).toBe(answer.Mac);

    const verify = (msg: Buffer, m: Buffer) => call('VerifyMac', { KeyId: key.keyId, Algorithm: algorithm, Message: b64(msg), Mac: b64(m) });
    const ok = await verify(message, mac);
    expect(ok).toMatchObject({ KeyId: key.keyId, Algorithm: algorithm, Value: true });
    expect(Object.keys(ok).sort()).toEqual(['Algorithm', 'KeyId', 'RequestId', 'Value']);
    const flipped = Buffer.from(mac);
    flipped[5] = (flipped[5] ?? 0) ^ 0x01;
    expect((await verify(message, flipped)).Value).toBe(false);
    expect((await verify(message, mac.subarray(0, mac.length - 1))).Value).toBe(false);
    const other = Buffer.from(message);
    other[0] = (other[0] ?? 0) ^ 0x80;
    expect((await verify(other, mac)).Value).toBe(false);
  });

  it('another key of the same spec gives another MAC, which the first key does not verify', async () => {
    const a = await createMacKey(tier, 'HMAC_SHA256');
    const b = await createMacKey(tier, 'HMAC_SHA256');
    const Message = b64(Buffer.from('same message'));
    const macA = (await call('GenerateMac', { KeyId: a.keyId, Algorithm: 'HMAC_SHA_256', Message })).Mac as string;
    const macB = (await call('GenerateMac', { KeyId: b.keyId, Algorithm: 'HMAC_SHA_256', Message })).Mac as string;
    expect(macA).not.toBe(macB);
    expect((await call('VerifyMac', { KeyId: a.keyId, Algorithm: 'HMAC_SHA_256', Message, Mac: macB })).Value).toBe(false);
  });

  it('4xx answers: the wrong algorithm for the spec, HMAC_SM3, Message bounds, bad base64; DryRun; rotation refused', async () => {
    const key = await createMacKey(tier, 'HMAC_SHA256');
    const Message = b64(Buffer.from('m'));
    const wrongAlgorithm = await sdkError(() => call('GenerateMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_512', Message }));
    expect(wrongAlgorithm).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(wrongAlgorithm.message).toMatch(/HMAC_SHA256 key computes HMAC_SHA_256 only/);
    const sm3 = await sdkError(() => call('GenerateMac', { KeyId: key.keyId, Algorithm: 'HMAC_SM3', Message }));
    expect(sm3).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(sm3.message).toMatch(/HMAC_SM3 is not supported/);
    expect(await sdkError(() => call('VerifyMac', { KeyId: key.keyId, Algorithm: 'HMAC_SM3', Message, Mac: Message }))).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(await sdkError(() => call('GenerateMac', { KeyId: key.keyId, Algorithm: 'HMAC_MD5', Message }))).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(await sdkError(() => call('GenerateMac', { KeyId: key.keyId, Message }))).toMatchObject({ code: 'MissingParameter', statusCode: 400 });

    // 4096 bytes is the limit (domain/mac.ts), both at the schema and after decoding.
    const max = randomBytes(4096);
    const atLimit = await call('GenerateMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message: b64(max) });
    expect((await call('VerifyMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message: b64(max), Mac: atLimit.Mac })).Value).toBe(true);
    expect(await sdkError(() => call('GenerateMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message: b64(randomBytes(4097)) }))).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(await sdkError(() => call('GenerateMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message: 'not base64!' }))).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(await sdkError(() => call('VerifyMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message, Mac: '***' }))).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });

    expect(await sdkError(() => call('GenerateMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message, DryRun: 'true' }))).toMatchObject({ code: 'DryRunOperationError' });
    expect(await sdkError(() => call('VerifyMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message, Mac: Message, DryRun: 'true' }))).toMatchObject({ code: 'DryRunOperationError' });
    expect(await sdkError(() => call('VerifyMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_512', Message, Mac: Message, DryRun: 'true' }))).toMatchObject({ code: 'ValidationError' });
    expect(await sdkError(() => call('GenerateMac', { KeyId: 'key-doesnotexist0000000000', Algorithm: 'HMAC_SHA_256', Message }))).toMatchObject({ code: 'Forbidden.KeyNotFound', statusCode: 404 });

    // MAC keys never rotate (the key policy's `mac` row).
    expect(await sdkError(() => call('CreateKeyVersion', { KeyId: key.keyId }))).toMatchObject({ code: 'Rejected.UnsupportedOperation', statusCode: 400 });
    expect(await sdkError(() => call('UpdateRotationPolicy', { KeyId: key.keyId, EnableAutomaticRotation: 'true', RotationInterval: '30d' }))).toMatchObject({ code: 'Rejected.UnsupportedOperation', statusCode: 400 });

    // Only an Enabled MAC key MACs (§5.1's crypto row), for both actions; enabled again, it verifies its old MACs.
    const { Mac } = await call('GenerateMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message });
    await call('DisableKey', { KeyId: key.keyId });
    expect(await sdkError(() => call('GenerateMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message }))).toMatchObject({ code: 'Rejected.Disabled', statusCode: 409 });
    expect(await sdkError(() => call('VerifyMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message, Mac }))).toMatchObject({ code: 'Rejected.Disabled', statusCode: 409 });
    await call('EnableKey', { KeyId: key.keyId });
    expect((await call('VerifyMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message, Mac })).Value).toBe(true);
    await call('ScheduleKeyDeletion', { KeyId: key.keyId, PendingWindowInDays: 7 });
    expect(await sdkError(() => call('VerifyMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message, Mac }))).toMatchObject({ code: 'Rejected.PendingDeletion', statusCode: 409 });
  });

  it('CreateKey: a MAC spec takes only GENERATE/VERIFY_MAC; other specs refuse that usage; no imported MAC material', async () => {
    const instance = instanceOfTier(server, tier);
    const explicit = await call('CreateKey', { DKMSInstanceId: instance, KeySpec: 'HMAC_SHA384', KeyUsage: 'GENERATE/VERIFY_MAC' });
    expect(explicit.KeyMetadata.KeyUsage).toBe('GENERATE/VERIFY_MAC');
    for (const [KeySpec, KeyUsage] of [['HMAC_SHA256', 'ENCRYPT/DECRYPT'], ['HMAC_SHA256', 'SIGN/VERIFY'], ['Aliyun_AES_256', 'GENERATE/VERIFY_MAC'], ['EC_P256', 'GENERATE/VERIFY_MAC']]) {
      const error = await sdkError(() => call('CreateKey', { DKMSInstanceId: instance, KeySpec, KeyUsage }));
      expect(error, `${KeySpec} ${KeyUsage}`).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
      expect(error.message).toMatch(/KeyUsage/);
    }
    expect(await sdkError(() => call('CreateKey', { DKMSInstanceId: instance, KeySpec: 'HMAC_SHA256', Origin: 'EXTERNAL' }))).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(await sdkError(() => call('CreateKey', { DKMSInstanceId: instance, KeySpec: 'HMAC_SM3' }))).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
  });
});

describe('the MAC really is HMAC of the message (node:crypto, key values the test knows)', () => {
  it.each(MAC_ALGORITHMS)('HSM tier, %s: a token key object made from a known value, used through the adapter path of a version key', async (algorithm) => {
    const hash = macHash(algorithm);
    // The test's own object in its own test token, addressed like a version (CKA_ID = a
    // version id the test chooses), made with the template the adapter generates with.
    const versionId = randomUUID();
    const value = randomBytes(MAC_HASH_BYTES[hash]);
    await withTokenSession(server, (p11, session) => {
      p11.C_CreateObject(session, m.hmacKeyTemplate({ token: true, id: versionId, value }));
    });
    try {
      const message = randomBytes(333);
      // Hsm.macWithVersionKey is what services/mac.ts calls for an HSM-tier version.
      const mac = await server.kms.deps.hsm.macWithVersionKey(versionId, algorithm, message);
      expect(mac.toString('hex')).toBe(createHmac(hash, value).update(message).digest('hex'));
    } finally {
      expect(await server.kms.deps.hsm.destroyVersionKey(versionId)).toBe(true);
    }
  });

  it('HSM tier: the known-value object is as protected as a generated one (sensitive, non-extractable)', async () => {
    const versionId = randomUUID();
    await withTokenSession(server, (p11, session) => {
      const handle = p11.C_CreateObject(session, m.hmacKeyTemplate({ token: true, id: versionId, value: randomBytes(32) }));
      expect(() => p11.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_VALUE }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
      p11.C_DestroyObject(session, handle);
    });
  });

  it('SOFTWARE tier: GenerateMac through the SDK equals node:crypto HMAC under the version\'s material (unsealed by the test)', async () => {
    for (const algorithm of MAC_ALGORITHMS) {
      const key = await createMacKey('SOFTWARE', SPEC_OF[algorithm]);
      const version = await getVersion(server.kms.deps.db, key.versionId);
      expect(version?.storage).toBe('sealed');
      const material = await server.kms.deps.hsm.unsealWithRootKey(version!.sealedMaterial!, Buffer.from(key.versionId));
      expect(material).toHaveLength(MAC_HASH_BYTES[macHash(algorithm)]);
      const message = randomBytes(64);
      const answer = await call('GenerateMac', { KeyId: key.keyId, Algorithm: algorithm, Message: b64(message) });
      expect(Buffer.from(answer.Mac as string, 'base64').toString('hex')).toBe(createHmac(macHash(algorithm), material).update(message).digest('hex'));
    }
  });

  it('neither messages nor MACs reach the logs', async () => {
    const key = await createMacKey('HSM', 'HMAC_SHA256');
    const Message = b64(Buffer.from(`secret-message-${randomUUID()}`));
    const { Mac } = await call('GenerateMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message });
    await call('VerifyMac', { KeyId: key.keyId, Algorithm: 'HMAC_SHA_256', Message, Mac });
    const logs = server.logs.join('\n');
    expect(logs).not.toContain(Message);
    expect(logs).not.toContain(Mac as string);
  });
});

describe('HSM-tier MAC keys are sensitive and non-extractable', () => {
  it('PKCS#11 attributes: a generic secret that only signs/verifies; its value is unreadable', async () => {
    const key = await createMacKey('HSM', 'HMAC_SHA512');
    await withTokenSession(server, (p11, session) => {
      const [handle] = findObjects(p11, session, m.secretKeyById(key.versionId));
      expect(handle).toBeDefined();
      const [keyType] = findObjects(p11, session, [...m.secretKeyById(key.versionId), { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET }]);
      expect(keyType).toBeDefined();
      const attrs = p11.C_GetAttributeValue(session, handle!, [
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_TOKEN },
        { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
        { type: pkcs11js.CKA_ALWAYS_SENSITIVE },
        { type: pkcs11js.CKA_SIGN },
        { type: pkcs11js.CKA_ENCRYPT },
        { type: pkcs11js.CKA_WRAP },
        { type: pkcs11js.CKA_DERIVE },
      ]);
      const flags = attrs.map((a) => (a.value as Buffer)[0] === 1);
      expect(flags).toEqual([true, false, true, true, true, true, false, false, false]);
      expect(() => p11.C_GetAttributeValue(session, handle!, [{ type: pkcs11js.CKA_VALUE }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
    });
    // The reconciler's inventory lists it as a version key.
    expect((await server.kms.deps.hsm.listObjectIds()).versionKeys).toContain(key.versionId);
  });

  it('ListKeys filters by the MAC specs and usage', async () => {
    const key = await createMacKey('HSM', 'HMAC_SHA224');
    const filters = (spec: string, usage: string) => JSON.stringify([{ Key: 'KeySpec', Values: [spec] }, { Key: 'KeyUsage', Values: [usage] }]);
    const ids = (answer: Record<string, any>) => (answer.Keys?.Key ?? []).map((k: { KeyId: string }) => k.KeyId);
    expect(ids(await call('ListKeys', { Filters: filters('HMAC_SHA224', 'GENERATE/VERIFY_MAC'), PageSize: 100 }))).toContain(key.keyId);
    expect(ids(await call('ListKeys', { Filters: filters('HMAC_SHA224', 'ENCRYPT/DECRYPT'), PageSize: 100 }))).not.toContain(key.keyId);
  });

  it('an orphan HMAC object (a CreateKey that crashed before its commit) is reconciled away; a committed one stays', async () => {
    const key = await createMacKey('HSM', 'HMAC_SHA256');
    const orphan = randomUUID();
    await server.kms.deps.hsm.generateVersionKey(orphan, { kind: 'hmac', hash: 'sha256' });
    await reconcileHsmObjects(server.kms.deps, { graceMs: 0 });
    const second = await reconcileHsmObjects(server.kms.deps, { graceMs: 0 });
    expect(second.destroyed).toContainEqual({ kind: 'orphan-version-key', objectId: orphan });
    expect(second.destroyed.map((d) => d.objectId)).not.toContain(key.versionId);
    expect(await server.kms.deps.hsm.hasVersionKey(orphan)).toBe(false);
    expect(await server.kms.deps.hsm.hasVersionKey(key.versionId)).toBe(true);
  });

  it('pkcs11-tool --list-objects shows the MAC key sensitive, never extractable, without a value', async () => {
    const key = await createMacKey('HSM', 'HMAC_SHA256');
    const { stdout } = await run(
      'pkcs11-tool',
      ['--module', server.config.hsm.modulePath, '--token-label', server.token.label, '--login', '--pin', server.token.userPin, '--list-objects', '--type', 'secrkey'],
      { env: { ...process.env, SOFTHSM2_CONF: server.token.confPath } },
    );
    const block = stdout.split(/\n(?=Secret Key Object)/).find((b) => b.includes(`label:      ${key.versionId}`));
    expect(block, stdout).toBeDefined();
    expect(block).toMatch(/^Secret Key Object; Generic secret length 32/);
    // Only MAC use: never encrypt, decrypt, wrap, unwrap or derive.
    expect(/Usage:\s+(.*)/.exec(block ?? '')?.[1]).not.toMatch(/encrypt|decrypt|wrap|derive/);
    const access = (/Access:\s+(.*)/.exec(block ?? '')?.[1] ?? '').split(', ');
    expect(access).toContain('sensitive');
    expect(access).toContain('always sensitive');
    expect(access).toContain('never extractable');
    expect(access).not.toContain('extractable');
    expect(block).not.toMatch(/[Vv]alue/);
  });
});
