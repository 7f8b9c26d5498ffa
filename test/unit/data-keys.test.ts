import { constants, generateKeyPairSync, privateDecrypt } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  dataKeyFromPlaintext,
  dataKeyLength,
  dataKeyPlaintext,
  maxWrappableBytes,
  parseExportPublicKey,
  wrapDataKeyForExport,
} from '../../src/domain/data-keys.js';
import { dryRunOutcome, dryRunSucceeded } from '../../src/domain/dry-run.js';
import { KmsError, internalFailure, invalidParameter, keyNotFound, noPermission, unavailable } from '../../src/domain/errors.js';

describe('dataKeyLength (§3.4)', () => {
  it('NumberOfBytes wins over KeySpec; AES_128 is 16; the default 32', () => {
    expect(dataKeyLength(undefined, undefined)).toBe(32);
    expect(dataKeyLength(undefined, 'AES_256')).toBe(32);
    expect(dataKeyLength(undefined, 'AES_128')).toBe(16);
    expect(dataKeyLength(7, 'AES_128')).toBe(7);
    expect(dataKeyLength(1024, undefined)).toBe(1024);
  });
});

describe('the data key inside a blob is its base64 text (§5.9)', () => {
  it('round-trips every length 1..1024', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 1024 }), (bytes) => {
        const key = Buffer.from(bytes);
        const text = dataKeyPlaintext(key);
        expect(text.toString('ascii')).toBe(key.toString('base64'));
        expect(dataKeyFromPlaintext(text)).toEqual(key);
      }),
    );
  });

  it.each(['', 'hello, world', 'aGVsbG8', 'aGVsbG8=\n', Buffer.alloc(1025).toString('base64')])(
    '%j holds no data key → InvalidParameter(CiphertextBlob)',
    (text) => {
      expect(() => dataKeyFromPlaintext(Buffer.from(text, 'latin1'))).toThrow(/CiphertextBlob/);
    },
  );
});

describe('export wrapping', () => {
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const spki = pair.publicKey.export({ format: 'der', type: 'spki' }).toString('base64');

  it('the RFC 8017 capacities of RSA-2048', () => {
    expect(maxWrappableBytes(2048, 'RSAES_OAEP_SHA_256')).toBe(190);
    expect(maxWrappableBytes(2048, 'RSAES_OAEP_SHA_1')).toBe(214);
    expect(maxWrappableBytes(2048, 'RSAES_PKCS1_V1_5')).toBe(245);
    expect(maxWrappableBytes(3072, 'RSAES_OAEP_SHA_256')).toBe(318);
  });

  it('wraps the raw bytes; the private key recovers them; one byte over the capacity is refused', () => {
    const key = parseExportPublicKey(spki, 'RSA_2048');
    for (const [algorithm, oaepHash] of [['RSAES_OAEP_SHA_256', 'sha256'], ['RSAES_OAEP_SHA_1', 'sha1']] as const) {
      const max = maxWrappableBytes(2048, algorithm);
      const dataKey = Buffer.alloc(max, 7);
      const wrapped = wrapDataKeyForExport(key, algorithm, dataKey);
      expect(privateDecrypt({ key: pair.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, wrapped)).toEqual(dataKey);
      expect(() => wrapDataKeyForExport(key, algorithm, Buffer.alloc(max + 1))).toThrow(/NumberOfBytes/);
    }
  });

  it('PublicKeyBlob must be base64 DER SPKI of RSA with the modulus WrappingKeySpec names', () => {
    expect(() => parseExportPublicKey('', 'RSA_2048')).toThrow(/PublicKeyBlob/);
    expect(() => parseExportPublicKey('%%%', 'RSA_2048')).toThrow(/PublicKeyBlob/);
    expect(() => parseExportPublicKey(Buffer.from('x').toString('base64'), 'RSA_2048')).toThrow(/PublicKeyBlob/);
    expect(() => parseExportPublicKey(spki, 'RSA_3072')).toThrow(/2048 bits/);
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    expect(() => parseExportPublicKey(ec, 'RSA_2048')).toThrow(/RSA/);
    expect(parseExportPublicKey(spki.replace(/(.{64})/g, '$1\n'), 'RSA_2048').asymmetricKeyType).toBe('rsa');
  });
});

describe('dryRunOutcome (§3.4)', () => {
  it('maps client errors to ValidationError / AccessDeniedError keeping the real code; leaves the rest', () => {
    const code = (e: unknown) => (e as KmsError).code;
    expect(code(dryRunOutcome(dryRunSucceeded()))).toBe('DryRunOperationError');
    expect(code(dryRunOutcome(invalidParameter('X')))).toBe('ValidationError');
    expect((dryRunOutcome(keyNotFound()) as KmsError).message).toBe('Forbidden.KeyNotFound: The specified Key is not found.');
    expect(code(dryRunOutcome(noPermission()))).toBe('AccessDeniedError');
    const down = unavailable('db');
    expect(dryRunOutcome(down)).toBe(down);
    const bug = internalFailure('x');
    expect(dryRunOutcome(bug)).toBe(bug);
    const plain = new Error('boom');
    expect(dryRunOutcome(plain)).toBe(plain);
  });
});
