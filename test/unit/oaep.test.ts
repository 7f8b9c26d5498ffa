import { constants, generateKeyPairSync, privateDecrypt, publicEncrypt, type KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { KmsError } from '../../src/domain/errors.js';
import { decodeOaep, type OaepHash } from '../../src/domain/oaep.js';

let publicKey: KeyObject;
let privateKey: KeyObject;

beforeAll(() => {
  ({ publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 }));
});

/** OAEP-encrypt with node:crypto, then undo only the RSA step: what CKM_RSA_X_509 returns. */
function rawEm(message: Uint8Array, hash: OaepHash, label?: Buffer): Buffer {
  const ct = publicEncrypt(
    { key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash, ...(label ? { oaepLabel: label } : {}) },
    message,
  );
  return privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, ct);
}

function failure(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    if (e instanceof KmsError) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('expected a failure');
}

const UNIFORM = { code: 'InvalidKeyMaterial', message: 'key material is invalid.' };
// k − 2·hLen − 2 for a 2048-bit modulus.
const MAX_MESSAGE: Record<OaepHash, number> = { sha256: 190, sha1: 214 };

describe.each(['sha256', 'sha1'] as const)('decodeOaep with %s', (hash) => {
  it('recovers what node:crypto encrypted', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: MAX_MESSAGE[hash] }), (message) => {
        const em = rawEm(message, hash);
        expect(em.length).toBe(256);
        expect(decodeOaep(em, hash).equals(Buffer.from(message))).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('honours a label', () => {
    const label = Buffer.from('kms');
    const em = rawEm(Buffer.alloc(32, 7), hash, label);
    expect(decodeOaep(em, hash, label)).toEqual(Buffer.alloc(32, 7));
    expect(failure(() => decodeOaep(em, hash))).toEqual(UNIFORM);
  });

  it('fails uniformly for any flipped byte', () => {
    const em = rawEm(Buffer.alloc(32, 1), hash);
    fc.assert(
      fc.property(fc.nat({ max: em.length - 1 }), fc.integer({ min: 1, max: 255 }), (index, xor) => {
        const bad = Buffer.from(em);
        bad[index] = (bad[index] ?? 0) ^ xor;
        expect(failure(() => decodeOaep(bad, hash))).toEqual(UNIFORM);
      }),
      { numRuns: 200 },
    );
  });

  it('fails uniformly for the wrong hash, wrong lengths and non-OAEP input', () => {
    const em = rawEm(Buffer.alloc(32, 1), hash);
    const other: OaepHash = hash === 'sha1' ? 'sha256' : 'sha1';
    const inputs: Buffer[] = [
      em.subarray(1), // leading zero dropped
      em.subarray(0, 255),
      Buffer.concat([Buffer.alloc(1), em]),
      Buffer.alloc(0),
      Buffer.alloc(2 * (hash === 'sha1' ? 20 : 32) + 1),
      Buffer.alloc(256),
      Buffer.alloc(256, 0xff),
    ];
    expect(failure(() => decodeOaep(em, other))).toEqual(UNIFORM);
    for (const input of inputs) expect(failure(() => decodeOaep(input, hash))).toEqual(UNIFORM);
  });
});

describe('decodeOaep edge cases', () => {
  it('decodes the empty message and the longest message', () => {
    expect(decodeOaep(rawEm(Buffer.alloc(0), 'sha256'), 'sha256')).toEqual(Buffer.alloc(0));
    const longest = Buffer.alloc(190, 0xab);
    expect(decodeOaep(rawEm(longest, 'sha256'), 'sha256')).toEqual(longest);
  });

  it('does not alias the input buffer', () => {
    const em = rawEm(Buffer.alloc(32, 9), 'sha256');
    const m = decodeOaep(em, 'sha256');
    m.fill(0);
    expect(decodeOaep(em, 'sha256')).toEqual(Buffer.alloc(32, 9));
  });
});
