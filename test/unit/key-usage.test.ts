import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeDigest, ecdsaDerToRaw, ecdsaRawToDer, maxOaepPlaintextBytes } from '../../src/domain/asymmetric.js';
import { KmsError } from '../../src/domain/errors.js';
import { USAGE_ACTIONS, USAGE_COLUMNS, type UsageAction, type UsageColumn, assertUsageAllows, usageAllows, usageColumn } from '../../src/domain/key.js';

const Y = true;
const N = false;

/** Columns: symmetric ENCRYPT/DECRYPT | asymmetric ENCRYPT/DECRYPT | SIGN/VERIFY | GENERATE/VERIFY_MAC. */
const EXPECTED: Record<UsageAction, [boolean, boolean, boolean, boolean]> = {
  Encrypt: [Y, N, N, N],
  Decrypt: [Y, N, N, N],
  GenerateDataKey: [Y, N, N, N],
  GenerateDataKeyWithoutPlaintext: [Y, N, N, N],
  GenerateAndExportDataKey: [Y, N, N, N],
  ExportDataKey: [Y, N, N, N],
  ReEncrypt: [Y, N, N, N],
  ReEncryptFromAsymmetric: [N, Y, N, N],
  AsymmetricEncrypt: [N, Y, N, N],
  AsymmetricDecrypt: [N, Y, N, N],
  AsymmetricSign: [N, N, Y, N],
  AsymmetricVerify: [N, N, Y, N],
  GetPublicKey: [N, Y, Y, N],
  GenerateMac: [N, N, N, Y],
  VerifyMac: [N, N, N, Y],
};

const SAMPLE_KEY: Record<UsageColumn, { keySpec: string; keyUsage: 'ENCRYPT/DECRYPT' | 'SIGN/VERIFY' | 'GENERATE/VERIFY_MAC' }> = {
  'symmetric-encrypt': { keySpec: 'Aliyun_AES_256', keyUsage: 'ENCRYPT/DECRYPT' },
  'asymmetric-encrypt': { keySpec: 'RSA_2048', keyUsage: 'ENCRYPT/DECRYPT' },
  sign: { keySpec: 'EC_P256', keyUsage: 'SIGN/VERIFY' },
  mac: { keySpec: 'HMAC_SHA256', keyUsage: 'GENERATE/VERIFY_MAC' },
};

describe('the usage table: which actions each kind of key allows', () => {
  it('the expectation covers every action and every column', () => {
    expect(Object.keys(EXPECTED).sort()).toEqual([...USAGE_ACTIONS].sort());
    expect(USAGE_COLUMNS).toHaveLength(4);
  });

  for (const action of USAGE_ACTIONS) {
    USAGE_COLUMNS.forEach((column, i) => {
      const allowed = EXPECTED[action][i]!;
      it(`${action} on ${column}: ${allowed ? 'allowed' : 'Rejected.UnsupportedOperation'}`, () => {
        expect(usageAllows(action, column)).toBe(allowed);
        const key = SAMPLE_KEY[column];
        expect(usageColumn(key)).toBe(column);
        if (allowed) {
          expect(() => assertUsageAllows(action, key)).not.toThrow();
        } else {
          try {
            assertUsageAllows(action, key);
            expect.unreachable();
          } catch (e) {
            expect(e).toBeInstanceOf(KmsError);
            expect((e as KmsError).code).toBe('Rejected.UnsupportedOperation');
            expect((e as KmsError).kind).toBe('client');
          }
        }
      });
    });
  }

  it('RSA SIGN/VERIFY keys sign, and EC keys are never asymmetric-encrypt', () => {
    expect(usageColumn({ keySpec: 'RSA_3072', keyUsage: 'SIGN/VERIFY' })).toBe('sign');
    expect(usageColumn({ keySpec: 'EC_P256K', keyUsage: 'SIGN/VERIFY' })).toBe('sign');
  });
});

describe('asymmetric encodings', () => {
  it('ecdsaRawToDer turns PKCS#11 r ‖ s into a DER signature node:crypto verifies', () => {
    for (const namedCurve of ['P-256', 'secp256k1']) {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve });
      for (let i = 0; i < 20; i++) {
        const message = Buffer.from(`message ${i}`);
        const raw = sign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
        expect(verify('sha256', message, publicKey, ecdsaRawToDer(raw))).toBe(true);
      }
    }
  });

  it('ecdsaRawToDer strips leading zeros and keeps INTEGERs positive', () => {
    const r = Buffer.alloc(32, 0);
    r[31] = 1;
    const s = Buffer.alloc(32, 0xff);
    expect(ecdsaRawToDer(Buffer.concat([r, s])).toString('hex')).toBe(`3026020101022100${'ff'.repeat(32)}`);
  });

  it('ecdsaDerToRaw inverts ecdsaRawToDer and refuses malformed DER', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    for (let i = 0; i < 20; i++) {
      const raw = sign('sha256', Buffer.from(`m${i}`), { key: privateKey, dsaEncoding: 'ieee-p1363' });
      const der = ecdsaRawToDer(raw);
      expect(ecdsaDerToRaw(der, 32)).toEqual(raw);
      expect(ecdsaDerToRaw(Buffer.concat([der, Buffer.from([0])]), 32)).toBeUndefined();
      expect(ecdsaDerToRaw(der.subarray(0, der.length - 1), 32)).toBeUndefined();
    }
    expect(ecdsaDerToRaw(Buffer.alloc(0), 32)).toBeUndefined();
    expect(ecdsaDerToRaw(Buffer.from('3006020101020101', 'hex'), 32)).toEqual(Buffer.concat([Buffer.alloc(31), Buffer.from([1]), Buffer.alloc(31), Buffer.from([1])]));
    // An r longer than the curve's order bytes.
    expect(ecdsaDerToRaw(Buffer.from(`30260221${'11'.repeat(33)}020101`, 'hex'), 32)).toBeUndefined();
  });

  it('ecdsaDerToRaw refuses BER forms of a valid signature, as OpenSSL does (a probe found them verified true)', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const message = Buffer.from('ber');
    const der = sign('sha256', message, privateKey);
    expect(ecdsaDerToRaw(der, 32)).toBeDefined();
    // SEQUENCE { INTEGER r, INTEGER s } with r re-encoded with one more leading zero byte.
    const rLength = der[3] as number;
    const r = der.subarray(4, 4 + rLength);
    const rest = der.subarray(4 + rLength);
    const paddedR = Buffer.concat([Buffer.from([0x02, rLength + 1, 0x00]), r]);
    const padded = Buffer.concat([Buffer.from([0x30, paddedR.length + rest.length]), paddedR, rest]);
    // The same content behind a long-form SEQUENCE length.
    const longForm = Buffer.concat([Buffer.from([0x30, 0x81, der[1] as number]), der.subarray(2)]);
    for (const ber of [padded, longForm]) {
      expect(verify('sha256', message, publicKey, ber)).toBe(false);
      expect(ecdsaDerToRaw(ber, 32)).toBeUndefined();
    }
    // A negative INTEGER (high bit set, no zero byte in front).
    expect(ecdsaDerToRaw(Buffer.from('3006020180020101', 'hex'), 32)).toBeUndefined();
  });

  it('Digest must be strict base64 of 32 bytes', () => {
    expect(decodeDigest(Buffer.alloc(32, 7).toString('base64'))).toEqual(Buffer.alloc(32, 7));
    for (const bad of [Buffer.alloc(31).toString('base64'), Buffer.alloc(33).toString('base64'), 'not base64!', '']) {
      expect(() => decodeDigest(bad)).toThrow(/Digest/);
    }
  });

  it('§5.2 OAEP plaintext limits', () => {
    expect(maxOaepPlaintextBytes(2048, 'RSAES_OAEP_SHA_256')).toBe(190);
    expect(maxOaepPlaintextBytes(2048, 'RSAES_OAEP_SHA_1')).toBe(214);
    expect(maxOaepPlaintextBytes(3072, 'RSAES_OAEP_SHA_256')).toBe(318);
    expect(maxOaepPlaintextBytes(3072, 'RSAES_OAEP_SHA_1')).toBe(342);
  });
});
