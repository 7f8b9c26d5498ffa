import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  assertTokenUsable,
  decodeImportToken,
  encodeImportToken,
  importTokenSignedBytes,
  type ImportTokenPayload,
} from '../../src/domain/import-token.js';

const printable = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 255 });
const payloadArb: fc.Arbitrary<ImportTokenPayload> = fc.record({
  v: fc.constant(1 as const),
  keyId: printable,
  wrappingKeyId: printable,
  algorithm: fc.constantFrom('RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256', 'RSAES_PKCS1_V1_5'),
  expiresAt: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
});
const macArb = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((a) => Buffer.from(a));

const payload: ImportTokenPayload = {
  v: 1,
  keyId: 'key-hzz630494463ejqjx12345',
  wrappingKeyId: '3a0e2c1c-8d4e-4b43-9f35-1b1a5d7f0c11',
  algorithm: 'RSAES_OAEP_SHA_256',
  expiresAt: 1_716_186_861,
};
const mac = Buffer.alloc(32, 0x5a);
const token = encodeImportToken(payload, mac);

const INVALID = expect.objectContaining({ code: 'InvalidImportToken', message: 'import token is invalid.' });

describe('import token codec', () => {
  it('round-trips and returns exactly the bytes the MAC covers', () => {
    fc.assert(
      fc.property(payloadArb, macArb, (p, m) => {
        const t = encodeImportToken(p, m);
        expect(t).toMatch(/^[A-Za-z0-9_-]+$/);
        const decoded = decodeImportToken(t);
        expect(decoded.payload).toEqual(p);
        expect(decoded.mac.equals(m)).toBe(true);
        expect(decoded.signedBytes.equals(importTokenSignedBytes(p))).toBe(true);
      }),
    );
  });

  it('detects any single changed character of the token', () => {
    const original = decodeImportToken(token);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ .';
    fc.assert(
      fc.property(fc.nat({ max: token.length - 1 }), fc.constantFrom(...alphabet), (i, c) => {
        fc.pre(token[i] !== c);
        const changed = token.slice(0, i) + c + token.slice(i + 1);
        let decoded;
        try {
          decoded = decodeImportToken(changed);
        } catch (e) {
          expect(e).toEqual(INVALID);
          return;
        }
        const same = decoded.signedBytes.equals(original.signedBytes) && decoded.mac.equals(original.mac);
        expect(same).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it('detects any single changed byte of the decoded token', () => {
    const raw = Buffer.from(token, 'base64url');
    const original = decodeImportToken(token);
    fc.assert(
      fc.property(fc.nat({ max: raw.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, xor) => {
        const changed = Buffer.from(raw);
        changed[i] = (changed[i] ?? 0) ^ xor;
        let decoded;
        try {
          decoded = decodeImportToken(changed.toString('base64url'));
        } catch (e) {
          expect(e).toEqual(INVALID);
          return;
        }
        expect(decoded.signedBytes.equals(original.signedBytes) && decoded.mac.equals(original.mac)).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  const raw = Buffer.from(token, 'base64url');
  const signed = importTokenSignedBytes(payload);
  const withVersion = (v: number) => Buffer.concat([Buffer.from([v]), signed.subarray(1), mac]).toString('base64url');
  const malformed: Array<[string, string]> = [
    ['empty', ''],
    ['standard base64 alphabet', raw.toString('base64')],
    ['padding', `${token}==`],
    ['whitespace', ` ${token}`],
    ['only a MAC', mac.toString('base64url')],
    ['truncated', raw.subarray(0, raw.length - 1).toString('base64url')],
    ['one byte too many', Buffer.concat([signed, Buffer.from([0]), mac]).toString('base64url')],
    ['version 2', withVersion(2)],
    ['version 0', withVersion(0)],
    ['field length past the end', Buffer.concat([Buffer.from([1, 200]), Buffer.alloc(40)]).toString('base64url')],
    ['empty field', Buffer.concat([Buffer.from([1, 0]), signed.subarray(2), mac]).toString('base64url')],
    [
      'unknown algorithm',
      encodeImportToken({ ...payload, algorithm: 'RSAES_OAEP_SHA_384' as ImportTokenPayload['algorithm'] }, mac),
    ],
    [
      'expiry beyond 2^53',
      Buffer.concat([signed.subarray(0, signed.length - 8), Buffer.alloc(8, 0xff), mac]).toString('base64url'),
    ],
  ];
  it.each(malformed)('rejects %s', (_name, t) => {
    expect(() => decodeImportToken(t)).toThrow(INVALID);
  });

  it('refuses to encode a payload it could not decode', () => {
    expect(() => encodeImportToken({ ...payload, keyId: '' }, mac)).toThrow();
    expect(() => encodeImportToken({ ...payload, keyId: 'has space' }, mac)).toThrow();
    expect(() => encodeImportToken({ ...payload, expiresAt: 1.5 }, mac)).toThrow();
    expect(() => encodeImportToken(payload, Buffer.alloc(31))).toThrow();
  });
});

describe('assertTokenUsable', () => {
  const at = (s: number) => new Date(s * 1000);
  const cases: Array<[string, string, Date, string | undefined]> = [
    ['same key, before expiry', payload.keyId, at(payload.expiresAt - 1), undefined],
    ['same key, a millisecond before expiry', payload.keyId, new Date(payload.expiresAt * 1000 - 1), undefined],
    ['same key, at expiry', payload.keyId, at(payload.expiresAt), 'ExpiredImportToken'],
    ['same key, after expiry', payload.keyId, at(payload.expiresAt + 86_400), 'ExpiredImportToken'],
    ['another key', 'key-hzzother', at(payload.expiresAt - 1), 'InvalidImportToken'],
    ['another key, expired', 'key-hzzother', at(payload.expiresAt + 1), 'InvalidImportToken'],
  ];
  it.each(cases)('%s', (_name, keyId, now, code) => {
    let got: string | undefined;
    try {
      assertTokenUsable(payload, { keyId, now });
    } catch (e) {
      got = (e as { code: string }).code;
      if (code === 'ExpiredImportToken') expect((e as Error).message).toBe('import token is expired.');
    }
    expect(got).toBe(code);
  });
});
