import { execFile } from 'node:child_process';
import { constants, createHash, createPublicKey, publicEncrypt, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as m from '../../src/hsm/pkcs11/mechanisms.js';
import { Pkcs11Hsm, findObjects } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import { assertUnreadable, isUnreadable } from '../../src/hsm/pkcs11/protection.js';
import { reconcileHsmObjects } from '../../src/services/reconciler.js';
import { type CreatedKey, createKeyIn, instanceOfTier } from '../helpers/fixtures.js';
import { KMS, type CallApi, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';
import { withTokenSession } from '../helpers/token-session.js';

/**
 * Issue 15, asymmetric keys on both tiers through the real SDK transport: signatures that
 * openssl verifies against GetPublicKey's PEM, ciphertexts from openssl that AsymmetricDecrypt
 * opens, the private halves' protection in the token, and the 4xx answers.
 */
const run = promisify(execFile);
let server: TestServer;
let call: CallApi;
let dir: string;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  dir = await mkdtemp(join(tmpdir(), 'hsm-kms-asym-'));
});

afterAll(async () => {
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const TIERS = ['HSM', 'SOFTWARE'] as const;
type Tier = (typeof TIERS)[number];

async function createKey(tier: Tier, keySpec: string, keyUsage?: string): Promise<CreatedKey> {
  const created = await createKeyIn(call, instanceOfTier(server, tier), { KeySpec: keySpec, ...(keyUsage ? { KeyUsage: keyUsage } : {}) });
  expect(created.metadata.ProtectionLevel).toBe(tier);
  return created;
}

async function publicKeyPem(key: { keyId: string; versionId: string }): Promise<string> {
  const answer = await call('GetPublicKey', { KeyId: key.keyId, KeyVersionId: key.versionId });
  expect(Object.keys(answer).sort()).toEqual(['KeyId', 'KeyVersionId', 'PublicKey', 'RequestId']);
  expect(answer.KeyVersionId).toBe(key.versionId);
  return answer.PublicKey as string;
}

let fileCounter = 0;
async function tempFile(contents: Buffer | string): Promise<string> {
  const path = join(dir, `f${fileCounter++}`);
  await writeFile(path, contents);
  return path;
}

/** `openssl dgst -sha256 -verify`: exit 0 and "Verified OK", or a thrown error. */
async function opensslVerifies(pem: string, message: Buffer, signature: Buffer, pss: boolean): Promise<boolean> {
  const args = ['dgst', '-sha256', '-verify', await tempFile(pem), '-signature', await tempFile(signature)];
  if (pss) args.push('-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32');
  args.push(await tempFile(message));
  try {
    const { stdout } = await run('openssl', args);
    return stdout.includes('Verified OK');
  } catch {
    return false;
  }
}

const SIGNING_CASES = [
  { spec: 'RSA_2048', algorithm: 'RSA_PSS_SHA_256', pss: true },
  { spec: 'RSA_3072', algorithm: 'RSA_PKCS1_SHA_256', pss: false },
  { spec: 'RSA_2048', algorithm: 'RSA_PKCS1_SHA_256', pss: false },
  { spec: 'EC_P256', algorithm: 'ECDSA_SHA_256', pss: false },
  { spec: 'EC_P256K', algorithm: 'ECDSA_SHA_256', pss: false },
] as const;

describe.each(TIERS)('%s tier: AsymmetricSign / AsymmetricVerify', (tier) => {
  it.each(SIGNING_CASES)('$spec $algorithm: openssl dgst -verify accepts the signature; a flipped one verifies false', async ({ spec, algorithm, pss }) => {
    const key = await createKey(tier, spec);
    const described = await call('DescribeKey', { KeyId: key.keyId });
    // §5.2: the default usage of a spec that can sign is SIGN/VERIFY.
    expect(described.KeyMetadata.KeyUsage).toBe('SIGN/VERIFY');
    expect(described.KeyMetadata.KeySpec).toBe(spec);
    const pem = await publicKeyPem(key);
    expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);

    const message = Buffer.from(`message signed by ${tier} ${spec} ${algorithm}`);
    const digest = createHash('sha256').update(message).digest().toString('base64');
    const signed = await call('AsymmetricSign', { KeyId: key.keyId, KeyVersionId: key.versionId, Algorithm: algorithm, Digest: digest });
    expect(Object.keys(signed).sort()).toEqual(['KeyId', 'KeyVersionId', 'RequestId', 'Value']);
    const signature = Buffer.from(signed.Value as string, 'base64');
    expect(await opensslVerifies(pem, message, signature, pss)).toBe(true);
    expect(await opensslVerifies(pem, Buffer.concat([message, Buffer.from('!')]), signature, pss)).toBe(false);

    const verified = await call('AsymmetricVerify', { KeyId: key.keyId, KeyVersionId: key.versionId, Algorithm: algorithm, Digest: digest, Value: signed.Value });
    expect(verified.Value).toBe(true);
    const flipped = Buffer.from(signature);
    flipped[flipped.length - 5] = (flipped[flipped.length - 5] ?? 0) ^ 0x01;
    const rejected = await call('AsymmetricVerify', { KeyId: key.keyId, KeyVersionId: key.versionId, Algorithm: algorithm, Digest: digest, Value: flipped.toString('base64') });
    expect(rejected.Value).toBe(false);
    const otherDigest = createHash('sha256').update('another message').digest().toString('base64');
    expect((await call('AsymmetricVerify', { KeyId: key.keyId, KeyVersionId: key.versionId, Algorithm: algorithm, Digest: otherDigest, Value: signed.Value })).Value).toBe(false);
  });
});

describe.each(TIERS)('%s tier: AsymmetricEncrypt / AsymmetricDecrypt', (tier) => {
  it.each([
    ['RSA_2048', 'RSAES_OAEP_SHA_256', 'sha256'],
    ['RSA_2048', 'RSAES_OAEP_SHA_1', 'sha1'],
    ['RSA_3072', 'RSAES_OAEP_SHA_256', 'sha256'],
  ] as const)('%s %s: a ciphertext from openssl pkeyutl decrypts; AsymmetricEncrypt round-trips', async (spec, algorithm, md) => {
    const key = await createKey(tier, spec, 'ENCRYPT/DECRYPT');
    const pem = await publicKeyPem(key);
    const secret = Buffer.from(`a secret for ${tier} ${spec} ${algorithm}`);
    const out = join(dir, `ct${fileCounter++}`);
    await run('openssl', [
      'pkeyutl', '-encrypt', '-pubin', '-inkey', await tempFile(pem), '-in', await tempFile(secret), '-out', out,
      '-pkeyopt', 'rsa_padding_mode:oaep', '-pkeyopt', `rsa_oaep_md:${md}`, '-pkeyopt', `rsa_mgf1_md:${md}`,
    ]);
    const ciphertext = await readFile(out);
    const decrypted = await call('AsymmetricDecrypt', { KeyId: key.keyId, KeyVersionId: key.versionId, Algorithm: algorithm, CiphertextBlob: ciphertext.toString('base64') });
    expect(Object.keys(decrypted).sort()).toEqual(['KeyId', 'KeyVersionId', 'Plaintext', 'RequestId']);
    expect(Buffer.from(decrypted.Plaintext as string, 'base64')).toEqual(secret);

    const encrypted = await call('AsymmetricEncrypt', { KeyId: key.keyId, KeyVersionId: key.versionId, Algorithm: algorithm, Plaintext: secret.toString('base64') });
    expect(Object.keys(encrypted).sort()).toEqual(['CiphertextBlob', 'KeyId', 'KeyVersionId', 'RequestId']);
    const back = await call('AsymmetricDecrypt', { KeyId: key.keyId, KeyVersionId: key.versionId, Algorithm: algorithm, CiphertextBlob: encrypted.CiphertextBlob });
    expect(Buffer.from(back.Plaintext as string, 'base64')).toEqual(secret);

    // No padding oracle: a tampered ciphertext and one of the wrong length are the same 400.
    const tampered = Buffer.from(ciphertext);
    tampered[10] = (tampered[10] ?? 0) ^ 0xff;
    for (const bad of [tampered, ciphertext.subarray(1)]) {
      const error = await sdkError(() => call('AsymmetricDecrypt', { KeyId: key.keyId, KeyVersionId: key.versionId, Algorithm: algorithm, CiphertextBlob: bad.toString('base64') }));
      expect(error).toMatchObject({ code: 'InvalidCiphertext', statusCode: 400 });
    }
  });

  it('the §5.2 plaintext limit: 190 bytes for RSA_2048 with OAEP-SHA256, 191 refused', async () => {
    const key = await createKey(tier, 'RSA_2048', 'ENCRYPT/DECRYPT');
    const publicKey = createPublicKey(await publicKeyPem(key));
    const ok = await call('AsymmetricEncrypt', { KeyId: key.keyId, KeyVersionId: key.versionId, Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: Buffer.alloc(190, 1).toString('base64') });
    expect(Buffer.from(ok.CiphertextBlob as string, 'base64')).toHaveLength(256);
    const tooLong = await sdkError(() => call('AsymmetricEncrypt', { KeyId: key.keyId, KeyVersionId: key.versionId, Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: Buffer.alloc(191, 1).toString('base64') }));
    expect(tooLong).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, Buffer.alloc(1))).toHaveLength(256);
  });
});

describe('HSM-tier private keys are sensitive and non-extractable', () => {
  it('PKCS#11 attributes of both halves; the private value is unreadable; rotation refused', async () => {
    const rsa = await createKey('HSM', 'RSA_2048', 'ENCRYPT/DECRYPT');
    const ec = await createKey('HSM', 'EC_P256');
    await withTokenSession(server, (p11, session) => {
      for (const versionId of [rsa.versionId, ec.versionId]) {
        const [privateKey] = findObjects(p11, session, m.privateKeyById(versionId));
        const [publicKey] = findObjects(p11, session, m.publicKeyById(versionId));
        expect(privateKey).toBeDefined();
        expect(publicKey).toBeDefined();
        const attrs = p11.C_GetAttributeValue(session, privateKey!, [
          { type: pkcs11js.CKA_SENSITIVE },
          { type: pkcs11js.CKA_EXTRACTABLE },
          { type: pkcs11js.CKA_TOKEN },
          { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
          { type: pkcs11js.CKA_ALWAYS_SENSITIVE },
          { type: pkcs11js.CKA_UNWRAP },
        ]);
        const flag = (i: number) => (attrs[i]?.value as Buffer)[0] === 1;
        expect([flag(0), flag(1), flag(2), flag(3), flag(4), flag(5)]).toEqual([true, false, true, true, true, false]);
        const secretAttribute = versionId === rsa.versionId ? pkcs11js.CKA_PRIVATE_EXPONENT : pkcs11js.CKA_VALUE;
        expect(() => p11.C_GetAttributeValue(session, privateKey!, [{ type: secretAttribute }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
      }
    });
    // Asymmetric keys never rotate (the key policy's `asymmetric` row).
    expect(await sdkError(() => call('CreateKeyVersion', { KeyId: rsa.keyId }))).toMatchObject({ code: 'Rejected.UnsupportedOperation', statusCode: 400 });
    expect(await sdkError(() => call('UpdateRotationPolicy', { KeyId: ec.keyId, EnableAutomaticRotation: 'true', RotationInterval: '30d' }))).toMatchObject({ code: 'Rejected.UnsupportedOperation' });
  });

  it('a key object the token made readable is refused and destroyed (DESIGN.md: read the protection back)', async () => {
    await withTokenSession(server, (p11, session) => {
      const readable = p11.C_GenerateKey(session, m.aesKeyGen, m.aesKeyTemplate({ token: false, readable: true, valueLength: 32 }));
      expect(isUnreadable(p11, session, readable)).toBe(false);
      expect(() => assertUnreadable(p11, session, readable)).toThrow(/readable/);
      expect(() => p11.C_GetAttributeValue(session, readable, [{ type: pkcs11js.CKA_CLASS }])).toThrow(/CKR_OBJECT_HANDLE_INVALID/);
      const sensitive = p11.C_GenerateKey(session, m.aesKeyGen, m.aesKeyTemplate({ token: false, valueLength: 32 }));
      expect(isUnreadable(p11, session, sensitive)).toBe(true);
      expect(() => assertUnreadable(p11, session, sensitive)).not.toThrow();
    });
  });

  it('pkcs11-tool --list-objects shows the private halves sensitive, never extractable, without a value', async () => {
    const key = await createKey('HSM', 'EC_P256K');
    const { stdout } = await run(
      'pkcs11-tool',
      ['--module', server.config.hsm.modulePath, '--token-label', server.token.label, '--login', '--pin', server.token.userPin, '--list-objects', '--type', 'privkey'],
      { env: { ...process.env, SOFTHSM2_CONF: server.token.confPath } },
    );
    const block = stdout.split(/\n(?=Private Key Object)/).find((b) => b.includes(`label:      ${key.versionId}`));
    expect(block, stdout).toBeDefined();
    expect(block).toMatch(/^Private Key Object; EC/);
    const access = (/Access:\s+(.*)/.exec(block ?? '')?.[1] ?? '').split(', ');
    expect(access).toContain('sensitive');
    expect(access).toContain('always sensitive');
    expect(access).toContain('never extractable');
    expect(access).not.toContain('extractable');
    expect(block).not.toMatch(/[Vv]alue/);
  });

  it('the reconciler counts a version pair as a version key, not as a wrapping pair; an orphan pair goes, both halves', async () => {
    const key = await createKey('HSM', 'RSA_2048');
    const objects = await server.kms.deps.hsm.listObjectIds();
    expect(objects.versionKeys).toContain(key.versionId);
    expect(objects.wrappingPairs).not.toContain(key.versionId);

    // What a crashed asymmetric CreateKey leaves: a pair whose version row never committed.
    const orphan = randomUUID();
    await server.kms.deps.hsm.generateVersionKey(orphan, { kind: 'ec', curve: 'P-256' });
    await reconcileHsmObjects(server.kms.deps, { graceMs: 0 });
    const second = await reconcileHsmObjects(server.kms.deps, { graceMs: 0 });
    expect(second.destroyed).toContainEqual({ kind: 'orphan-version-key', objectId: orphan });
    expect(second.destroyed.map((d) => d.objectId)).not.toContain(key.versionId);
    expect(second.flagged.map((f) => f.objectId)).not.toContain(key.versionId);
    await withTokenSession(server, (p11, session) => {
      expect(findObjects(p11, session, m.privateKeyById(orphan))).toHaveLength(0);
      expect(findObjects(p11, session, m.publicKeyById(orphan))).toHaveLength(0);
      expect(findObjects(p11, session, m.privateKeyById(key.versionId))).toHaveLength(1);
    });
    expect(await server.kms.deps.hsm.hasVersionKey(key.versionId)).toBe(true);
  });
});

describe('a process that did not create the pair (cold handle and public-key caches)', () => {
  it('reads the public half from the token, signs and decrypts with the private half', async () => {
    const rsa = await createKey('HSM', 'RSA_3072', 'ENCRYPT/DECRYPT');
    const ec = await createKey('HSM', 'EC_P256K');
    const other = await Pkcs11Hsm.open({ modulePath: server.config.hsm.modulePath, tokenLabel: server.token.label, pin: server.token.userPin, sessions: 2, importStrict: false });
    try {
      for (const key of [rsa, ec]) {
        const der = await other.versionPublicKey(key.versionId);
        expect(createPublicKey({ key: der, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' })).toBe(await publicKeyPem(key));
      }
      const message = Buffer.from('cold');
      const signature = await other.signWithVersionKey(ec.versionId, 'ECDSA_SHA_256', createHash('sha256').update(message).digest());
      expect(await opensslVerifies(await publicKeyPem(ec), message, signature, false)).toBe(true);
      const ct = publicEncrypt({ key: createPublicKey(await publicKeyPem(rsa)), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, message);
      expect(await other.decryptWithVersionKeyPair(rsa.versionId, 'RSAES_OAEP_SHA_256', ct)).toEqual(message);
    } finally {
      await other.close();
    }
  });
});

describe('CreateKey: specs and usages', () => {
  it('SDK 1.2.0 has the five asymmetric methods too: GetPublicKey, AsymmetricSign/Verify, AsymmetricEncrypt/Decrypt through them', async () => {
    const legacy = legacyClient(server.endpoint, server.admin);
    const signing = await createKey('HSM', 'EC_P256');
    const pem = (await legacy.getPublicKey(new KMS.GetPublicKeyRequest({ keyId: signing.keyId, keyVersionId: signing.versionId }))).publicKey;
    const message = Buffer.from('through the 1.2.0 SDK');
    const digest = createHash('sha256').update(message).digest().toString('base64');
    const signed = await legacy.asymmetricSign(new KMS.AsymmetricSignRequest({ keyId: signing.keyId, keyVersionId: signing.versionId, algorithm: 'ECDSA_SHA_256', digest }));
    expect([signed.keyId, signed.keyVersionId]).toEqual([signing.keyId, signing.versionId]);
    expect(await opensslVerifies(pem, message, Buffer.from(signed.value, 'base64'), false)).toBe(true);
    const verified = await legacy.asymmetricVerify(
      new KMS.AsymmetricVerifyRequest({ keyId: signing.keyId, keyVersionId: signing.versionId, algorithm: 'ECDSA_SHA_256', digest, value: signed.value }),
    );
    expect(verified.value).toBe(true);

    const encrypting = await createKey('HSM', 'RSA_2048', 'ENCRYPT/DECRYPT');
    const plaintext = Buffer.from('sealed by the 1.2.0 SDK').toString('base64');
    const ids = { keyId: encrypting.keyId, keyVersionId: encrypting.versionId, algorithm: 'RSAES_OAEP_SHA_1' };
    const sealed = await legacy.asymmetricEncrypt(new KMS.AsymmetricEncryptRequest({ ...ids, plaintext }));
    const opened = await legacy.asymmetricDecrypt(new KMS.AsymmetricDecryptRequest({ ...ids, ciphertextBlob: sealed.ciphertextBlob }));
    expect(opened.plaintext).toBe(plaintext);
  });

  it('EC_SM2 is refused clearly on SoftHSM2 (probed, no SM2) and on SOFTWARE', async () => {
    expect(server.kms.deps.hsm.supportsVersionKey({ kind: 'ec', curve: 'SM2' })).toBe(false);
    const hsm = await sdkError(() => call('CreateKey', { DKMSInstanceId: server.hsmInstanceId, KeySpec: 'EC_SM2' }));
    expect(hsm).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(hsm.data.Message).toMatch(/KeySpec.*EC_SM2 is not available for HSM keys.*SM2DSA/s);
    const software = await sdkError(() => call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, KeySpec: 'EC_SM2' }));
    expect(software).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(software.data.Message).toMatch(/EC_SM2 is not available for SOFTWARE keys/);
    // Alibaba's EC_SM2 also encrypts (SM2PKE): not "EC_SM2 supports SIGN/VERIFY", but not implemented here.
    const encrypting = await sdkError(() => call('CreateKey', { DKMSInstanceId: server.hsmInstanceId, KeySpec: 'EC_SM2', KeyUsage: 'ENCRYPT/DECRYPT' }));
    expect([encrypting.code, encrypting.statusCode]).toEqual(['Rejected.UnsupportedOperation', 400]);
    expect(encrypting.data.Message).toContain('SM2PKE');
  });

  it('ListKeys filters by the new KeySpecs and usages', async () => {
    const rsa = await createKey('SOFTWARE', 'RSA_3072', 'ENCRYPT/DECRYPT');
    const listed = async (filters: object[]) =>
      ((await call('ListKeys', { PageSize: 100, Filters: JSON.stringify(filters) })).Keys.Key as Array<{ KeyId: string }>).map((k) => k.KeyId);
    expect(await listed([{ Key: 'KeySpec', Values: ['RSA_3072'] }, { Key: 'KeyUsage', Values: ['ENCRYPT/DECRYPT'] }])).toContain(rsa.keyId);
    expect(await listed([{ Key: 'KeyUsage', Values: ['SIGN/VERIFY'] }])).not.toContain(rsa.keyId);
  });

  it('refuses a usage the spec cannot have, and imported asymmetric material', async () => {
    expect(await sdkError(() => call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, KeySpec: 'EC_P256', KeyUsage: 'ENCRYPT/DECRYPT' }))).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(await sdkError(() => call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, KeySpec: 'Aliyun_AES_256', KeyUsage: 'SIGN/VERIFY' }))).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(await sdkError(() => call('CreateKey', { DKMSInstanceId: server.hsmInstanceId, KeySpec: 'RSA_2048', Origin: 'EXTERNAL' }))).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
  });
});

describe('parameter errors', () => {
  let signKey: { keyId: string; versionId: string };
  let otherKey: { keyId: string; versionId: string };
  const digest = createHash('sha256').update('x').digest().toString('base64');

  beforeAll(async () => {
    signKey = await createKey('SOFTWARE', 'EC_P256');
    otherKey = await createKey('SOFTWARE', 'EC_P256');
  });

  it('a Digest of the wrong length or not base64 is InvalidParameter (400)', async () => {
    for (const Digest of [Buffer.alloc(31).toString('base64'), Buffer.alloc(48).toString('base64'), 'this is not base64!']) {
      const error = await sdkError(() => call('AsymmetricSign', { KeyId: signKey.keyId, KeyVersionId: signKey.versionId, Algorithm: 'ECDSA_SHA_256', Digest }));
      expect(error).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
      expect(error.data.Message).toContain('Digest');
    }
  });

  it('a missing KeyVersionId is MissingParameter (400) on every asymmetric action', async () => {
    for (const [action, extra] of [
      ['GetPublicKey', {}],
      ['AsymmetricSign', { Algorithm: 'ECDSA_SHA_256', Digest: digest }],
      ['AsymmetricVerify', { Algorithm: 'ECDSA_SHA_256', Digest: digest, Value: 'AAAA' }],
      ['AsymmetricEncrypt', { Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: 'AAAA' }],
      ['AsymmetricDecrypt', { Algorithm: 'RSAES_OAEP_SHA_256', CiphertextBlob: 'AAAA' }],
    ] as const) {
      const error = await sdkError(() => call(action, { KeyId: signKey.keyId, ...extra }));
      expect(error, action).toMatchObject({ code: 'MissingParameter', statusCode: 400 });
      expect(error.data.Message).toContain('KeyVersionId');
    }
  });

  it('a version of another key, or an unknown version, is Forbidden.KeyNotFound (404)', async () => {
    for (const KeyVersionId of [otherKey.versionId, '00000000-0000-4000-8000-000000000000']) {
      const error = await sdkError(() => call('AsymmetricSign', { KeyId: signKey.keyId, KeyVersionId, Algorithm: 'ECDSA_SHA_256', Digest: digest }));
      expect(error).toMatchObject({ code: 'Forbidden.KeyNotFound', statusCode: 404 });
    }
  });

  it('DryRun: DryRunOperationError when the call would succeed, ValidationError naming the code otherwise', async () => {
    const ok = await sdkError(() => call('AsymmetricSign', { KeyId: signKey.keyId, KeyVersionId: signKey.versionId, Algorithm: 'ECDSA_SHA_256', Digest: digest, DryRun: 'true' }));
    expect(ok).toMatchObject({ code: 'DryRunOperationError', statusCode: 400 });
    const bad = await sdkError(() => call('GetPublicKey', { KeyId: signKey.keyId, KeyVersionId: otherKey.versionId, DryRun: 'true' }));
    expect(bad).toMatchObject({ code: 'ValidationError', statusCode: 400 });
    expect(bad.data.Message).toMatch(/^Forbidden\.KeyNotFound: /);
  });

  it('an algorithm the spec does not have is InvalidParameter (400)', async () => {
    const error = await sdkError(() => call('AsymmetricSign', { KeyId: signKey.keyId, KeyVersionId: signKey.versionId, Algorithm: 'RSA_PSS_SHA_256', Digest: digest }));
    expect(error).toMatchObject({ code: 'InvalidParameter', statusCode: 400 });
    expect(error.data.Message).toContain('Algorithm');
  });
});

describe('OAEP-SHA256 on a token without it (SoftHSM2 2.6.1): the documented fallback, off in strict mode', () => {
  it('the token lacks native OAEP-SHA256 decryption, so the HSM-tier SHA-256 cases above took the host OAEP decoding', () => {
    const caps = server.kms.deps.hsm.info().capabilities;
    expect(caps.oaepSha256Decrypt).toBe(false);
    expect(caps.oaepSha1Decrypt).toBe(true);
    expect(caps.rsaX509).toBe(true);
    // The signing probes: what SoftHSM2 2.6.1 here really does (checked against node:crypto).
    expect([caps.rsaPss, caps.ecdsaP256, caps.ecdsaSecp256k1]).toEqual([true, true, true]);
    expect(server.kms.deps.hsm.supportsAsymmetricDecryption('RSAES_OAEP_SHA_256')).toBe(true);
  });

  describe('strict mode (KMS_IMPORT_STRICT=true)', () => {
    let strict: TestServer;
    beforeAll(async () => {
      strict = await startServer({ env: { KMS_IMPORT_STRICT: 'true' } });
    });
    afterAll(async () => {
      await strict?.stop();
    });

    it('refuses AsymmetricDecrypt with RSAES_OAEP_SHA_256 on the HSM tier (400), still decrypts OAEP-SHA1 and the SOFTWARE tier', async () => {
      const strictCall = openApiClient(strict.endpoint, strict.admin);
      const created = await strictCall('CreateKey', { DKMSInstanceId: strict.hsmInstanceId, KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT/DECRYPT' });
      const key = { KeyId: created.KeyMetadata.KeyId as string, KeyVersionId: created.KeyMetadata.PrimaryKeyVersion as string };
      const pem = (await strictCall('GetPublicKey', key)).PublicKey as string;
      const encrypt = (hash: 'sha1' | 'sha256') =>
        publicEncrypt({ key: createPublicKey(pem), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, Buffer.from('strict')).toString('base64');
      const refused = await sdkError(() => strictCall('AsymmetricDecrypt', { ...key, Algorithm: 'RSAES_OAEP_SHA_256', CiphertextBlob: encrypt('sha256') }));
      expect(refused).toMatchObject({ code: 'Rejected.UnsupportedOperation', statusCode: 400 });
      expect(refused.data.Message).toMatch(/RSAES_OAEP_SHA_256.*strict/);
      const sha1 = await strictCall('AsymmetricDecrypt', { ...key, Algorithm: 'RSAES_OAEP_SHA_1', CiphertextBlob: encrypt('sha1') });
      expect(Buffer.from(sha1.Plaintext as string, 'base64').toString()).toBe('strict');

      const soft = await strictCall('CreateKey', { DKMSInstanceId: strict.softwareInstanceId, KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT/DECRYPT' });
      const softKey = { KeyId: soft.KeyMetadata.KeyId as string, KeyVersionId: soft.KeyMetadata.PrimaryKeyVersion as string };
      const softPem = (await strictCall('GetPublicKey', softKey)).PublicKey as string;
      const ct = publicEncrypt({ key: createPublicKey(softPem), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, Buffer.from('soft'));
      const opened = await strictCall('AsymmetricDecrypt', { ...softKey, Algorithm: 'RSAES_OAEP_SHA_256', CiphertextBlob: ct.toString('base64') });
      expect(Buffer.from(opened.Plaintext as string, 'base64').toString()).toBe('soft');
    });
  });
});
