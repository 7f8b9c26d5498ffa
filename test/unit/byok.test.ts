import { constants, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { wrapKeyMaterial } from '../../src/domain/client-wrap.js';
import {
  type KeyManagementType,
  WRAPPING_ALGORITHMS,
  allowedWrappingAlgorithms,
  assertBoundMaterial,
  assertImportAction,
  assertWrappingAlgorithmAllowed,
  decodeEncryptedKeyMaterial,
  keyManagementType,
  materialExpired,
  materialExpiry,
} from '../../src/domain/byok.js';
import { KEY_STATES } from '../../src/domain/key.js';

const UNIFORM = expect.objectContaining({ code: 'InvalidKeyMaterial', message: 'key material is invalid.' });
const thrown = (fn: () => unknown): unknown => {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
};

describe('the seed’s wrapping algorithm table (000, step 2)', () => {
  const table: Record<KeyManagementType, Record<string, boolean>> = {
    default: { RSAES_OAEP_SHA_1: true, RSAES_OAEP_SHA_256: true, RSAES_PKCS1_V1_5: true },
    software: { RSAES_OAEP_SHA_1: false, RSAES_OAEP_SHA_256: true, RSAES_PKCS1_V1_5: true },
    hardware: { RSAES_OAEP_SHA_1: false, RSAES_OAEP_SHA_256: true, RSAES_PKCS1_V1_5: true },
  };
  for (const [type, row] of Object.entries(table) as Array<[KeyManagementType, Record<string, boolean>]>) {
    for (const algorithm of WRAPPING_ALGORITHMS) {
      it(`${type} × ${algorithm}: ${row[algorithm] ? 'offered' : 'refused'}`, () => {
        expect(allowedWrappingAlgorithms(type).includes(algorithm)).toBe(row[algorithm]);
        const error = thrown(() => assertWrappingAlgorithmAllowed(type, algorithm));
        if (row[algorithm]) expect(error).toBeUndefined();
        else expect(error).toMatchObject({ code: 'InvalidParameter', message: expect.stringContaining(`${algorithm} is not available`) });
      });
    }
  }

  it('tells the key management type from the instance and protection level', () => {
    expect(keyManagementType({ instanceId: null, protectionLevel: 'SOFTWARE' })).toBe('default');
    expect(keyManagementType({ instanceId: 'kst-a', protectionLevel: 'SOFTWARE' })).toBe('software');
    expect(keyManagementType({ instanceId: 'kst-b', protectionLevel: 'HSM' })).toBe('hardware');
  });
});

describe('which keys the import actions touch', () => {
  const actions = ['GetParametersForImport', 'ImportKeyMaterial', 'DeleteKeyMaterial'] as const;
  for (const action of actions) {
    for (const state of KEY_STATES) {
      const expected = state === 'PendingDeletion' && action !== 'DeleteKeyMaterial' ? 'Rejected.PendingDeletion' : undefined;
      it(`${action} on an EXTERNAL key in ${state}: ${expected ?? 'allowed'}`, () => {
        const error = thrown(() => assertImportAction(action, { origin: 'EXTERNAL', state }));
        if (expected) expect(error).toMatchObject({ code: expected });
        else expect(error).toBeUndefined();
      });
    }
    it(`${action} on an Aliyun_KMS key: Unsupported.Origin`, () => {
      expect(thrown(() => assertImportAction(action, { origin: 'Aliyun_KMS', state: 'Enabled' }))).toMatchObject({
        code: 'Unsupported.Origin',
        message: 'This key origin is not valid for this api.',
      });
    });
  }
});

describe('KeyMaterialExpireUnix', () => {
  const now = new Date('2025-01-01T00:00:00Z');
  const nowUnix = now.getTime() / 1000;

  it('0 or absent: never expires', () => {
    expect(materialExpiry(undefined, now)).toBeNull();
    expect(materialExpiry(0, now)).toBeNull();
  });

  it('refuses now and the past; takes the future in seconds', () => {
    for (const past of [nowUnix, nowUnix - 1, 1]) {
      expect(thrown(() => materialExpiry(past, now))).toMatchObject({ code: 'InvalidParameter', message: expect.stringContaining('KeyMaterialExpireUnix') });
    }
    expect(materialExpiry(nowUnix + 1, now)?.toISOString()).toBe('2025-01-01T00:00:01.000Z');
  });

  it('material is expired from its expiry on', () => {
    expect(materialExpired(null, now)).toBe(false);
    expect(materialExpired(new Date(now.getTime() + 1), now)).toBe(false);
    expect(materialExpired(now, now)).toBe(true);
  });
});

describe('permanent binding (seed 000)', () => {
  it('the first import binds; the same fingerprint passes; any other is the uniform InvalidKeyMaterial', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 0, maxLength: 32 }), (a, b) => {
        const bound = Buffer.from(a);
        expect(() => assertBoundMaterial(null, bound)).not.toThrow();
        expect(() => assertBoundMaterial(bound, Buffer.from(bound))).not.toThrow();
        const other = Buffer.from(b);
        if (!other.equals(bound)) expect(thrown(() => assertBoundMaterial(bound, other))).toEqual(UNIFORM);
      }),
    );
  });
});

describe('EncryptedKeyMaterial decoding', () => {
  it('round-trips any ciphertext, with the whitespace a text file may carry', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 512 }), (bytes) => {
        const text = Buffer.from(bytes).toString('base64');
        expect(decodeEncryptedKeyMaterial(text).equals(Buffer.from(bytes))).toBe(true);
        expect(decodeEncryptedKeyMaterial(` ${text.match(/.{1,64}/g)?.join('\n')}\n`).equals(Buffer.from(bytes))).toBe(true);
      }),
    );
  });

  it('anything that is not base64 is the same InvalidKeyMaterial as a bad ciphertext', () => {
    for (const text of ['', '   ', 'abc', 'ab$d', '====', 'YWJj=ZA==', 'YW\u00e9j']) {
      expect(thrown(() => decodeEncryptedKeyMaterial(text))).toEqual(UNIFORM);
    }
  });
});

describe('wrapKeyMaterial (seed 000, step 3 without openssl)', () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const der = publicKey.export({ type: 'spki', format: 'der' });
  const pem = Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }));

  it.each([
    ['RSAES_OAEP_SHA_256', 'sha256'],
    ['RSAES_OAEP_SHA_1', 'sha1'],
  ] as const)('%s with a DER or a PEM public key decrypts with OAEP %s (MGF1 with the same hash)', (algorithm, hash) => {
    const material = randomBytes(32);
    for (const key of [der, pem]) {
      const wrapped = wrapKeyMaterial(key, algorithm, material);
      expect(wrapped.length).toBe(256);
      expect(privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, wrapped).equals(material)).toBe(true);
    }
  });

  it('RSAES_PKCS1_V1_5 yields a 256-byte ciphertext that is not OAEP', () => {
    const wrapped = wrapKeyMaterial(der, 'RSAES_PKCS1_V1_5', randomBytes(32));
    expect(wrapped.length).toBe(256);
    expect(() => privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, wrapped)).toThrow();
  });

  it('refuses a non-RSA key', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
    expect(() => wrapKeyMaterial(ec, 'RSAES_OAEP_SHA_256', randomBytes(32))).toThrow(/RSA/);
  });
});
