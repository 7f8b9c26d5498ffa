import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeCiphertextBlob,
  encodeCiphertextBlob,
  encryptionContextAad,
  parseEncryptionContext,
} from '../../src/domain/ciphertext.js';
import { KmsError } from '../../src/domain/errors.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (e instanceof KmsError) return e.code;
    throw e;
  }
}

const blobArb = fc.record({
  keyVersionId: fc.uuid(),
  iv: fc.uint8Array({ minLength: 12, maxLength: 12 }).map((a) => Buffer.from(a)),
  ciphertext: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  tag: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a)),
});

describe('ciphertext blob', () => {
  it('round-trips encode → decode', () => {
    fc.assert(
      fc.property(blobArb, (blob) => {
        const decoded = decodeCiphertextBlob(encodeCiphertextBlob(blob));
        expect(decoded.keyVersionId).toBe(blob.keyVersionId);
        expect(decoded.iv.equals(blob.iv)).toBe(true);
        expect(decoded.ciphertext.equals(blob.ciphertext)).toBe(true);
        expect(decoded.tag.equals(blob.tag)).toBe(true);
      }),
    );
  });

  it('starts with the version id as 36 ASCII bytes (the documented sample prefix)', () => {
    const blob = encodeCiphertextBlob({
      keyVersionId: '86a9efd9-3d16-4894-bd4f-1fc43f3f2abf',
      iv: Buffer.alloc(12, 1),
      ciphertext: Buffer.from('hello'),
      tag: Buffer.alloc(16, 2),
    });
    expect(blob.startsWith('ODZhOWVmZDktM2QxNi00ODk0LWJkNGYt')).toBe(true);
    expect(Buffer.from(blob, 'base64').length).toBe(36 + 12 + 5 + 16);
  });

  const id = Buffer.from('86a9efd9-3d16-4894-bd4f-1fc43f3f2abf', 'ascii');
  const good = Buffer.concat([id, Buffer.alloc(12), Buffer.alloc(16)]);
  const b64 = good.toString('base64');
  const cases: Array<[string, string, string | undefined]> = [
    ['exactly 64 bytes, empty ciphertext', b64, undefined],
    ['unpadded base64', Buffer.concat([good, Buffer.from('x')]).toString('base64').replace(/=+$/, ''), undefined],
    ['empty', '', 'InvalidCiphertext'],
    ['not base64', '!!!!', 'InvalidCiphertext'],
    ['url-safe alphabet', Buffer.concat([good, Buffer.from([0xfb, 0xff])]).toString('base64url'), 'InvalidCiphertext'],
    ['embedded whitespace', `${b64.slice(0, 8)} ${b64.slice(8)}`, 'InvalidCiphertext'],
    ['non-canonical trailing bits', `${b64.slice(0, -3)}B==`, 'InvalidCiphertext'],
    ['padding missing one "="', b64.slice(0, -1), 'InvalidCiphertext'],
    ['63 bytes', good.subarray(0, 63).toString('base64'), 'InvalidCiphertext'],
    ['version id not a UUID', Buffer.concat([Buffer.alloc(36, 0x41), Buffer.alloc(28)]).toString('base64'), 'InvalidCiphertext'],
    ['version id with a non-hex char', Buffer.concat([Buffer.from('86a9efd9-3d16-4894-bd4f-1fc43f3f2abg'), Buffer.alloc(28)]).toString('base64'), 'InvalidCiphertext'],
  ];
  it.each(cases)('decode: %s', (_name, input, code) => {
    expect(codeOf(() => decodeCiphertextBlob(input))).toBe(code);
  });

  it('uses one code and message for every malformed blob', () => {
    try {
      decodeCiphertextBlob('AAAA');
      expect.unreachable();
    } catch (e) {
      expect(e).toMatchObject({ code: 'InvalidCiphertext', message: 'The ciphertext is invalid.' });
    }
  });
});

describe('parseEncryptionContext', () => {
  const cases: Array<[string, string | undefined, Record<string, string> | 'invalid']> = [
    ['absent', undefined, {}],
    ['empty string', '', {}],
    ['empty object', '{}', {}],
    ['string values', '{"a":"1","b":""}', { a: '1', b: '' }],
    ['array', '[]', 'invalid'],
    ['null', 'null', 'invalid'],
    ['string', '"a"', 'invalid'],
    ['number value', '{"a":1}', 'invalid'],
    ['nested object', '{"a":{"b":"c"}}', 'invalid'],
    ['null value', '{"a":null}', 'invalid'],
    ['not JSON', '{a:1}', 'invalid'],
    ['8193 characters', `{"a":"${'x'.repeat(8193 - 8)}"}`, 'invalid'],
    ['8192 characters', `{"a":"${'x'.repeat(8192 - 8)}"}`, { a: 'x'.repeat(8184) }],
  ];
  it.each(cases)('%s', (_name, json, expected) => {
    if (expected === 'invalid') {
      expect(codeOf(() => parseEncryptionContext(json))).toBe('InvalidParameter');
    } else {
      expect(parseEncryptionContext(json)).toEqual(expected);
    }
  });

  it('keeps "__proto__" as an ordinary key', () => {
    const ctx = parseEncryptionContext('{"__proto__":"x"}');
    expect(Object.getPrototypeOf(ctx)).toBe(Object.prototype);
    expect(Object.keys(ctx)).toEqual(['__proto__']);
    expect(encryptionContextAad(ctx)).toEqual(createHash('sha256').update('__proto__=x').digest());
  });

  it('names the parameter in the error', () => {
    expect(() => parseEncryptionContext('[]')).toThrow('"EncryptionContext"');
  });
});

describe('encryptionContextAad', () => {
  const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  const cases: Array<[string, Record<string, string>, Buffer | undefined]> = [
    ['empty → no AAD', {}, undefined],
    ['one pair', { a: 'b' }, sha('a=b')],
    ['sorted keys', { b: '2', a: '1', c: '3' }, sha('a=1&b=2&c=3')],
    ['uppercase sorts before lowercase', { b: '1', B: '2' }, sha('B=2&b=1')],
    ['UTF-8 values', { k: 'ü' }, sha('k=ü')],
  ];
  it.each(cases)('%s', (_name, ctx, expected) => {
    expect(encryptionContextAad(ctx)).toEqual(expected);
  });

  it('does not depend on key insertion order', () => {
    fc.assert(
      fc.property(
        fc
          .uniqueArray(fc.tuple(fc.string({ unit: 'binary' }), fc.string()), {
            selector: ([k]) => k,
            minLength: 1,
            maxLength: 10,
          })
          .chain((pairs) =>
            fc.tuple(fc.constant(pairs), fc.shuffledSubarray(pairs, { minLength: pairs.length, maxLength: pairs.length })),
          ),
        ([pairs, shuffled]) => {
          const a = encryptionContextAad(Object.fromEntries(pairs));
          const b = encryptionContextAad(Object.fromEntries(shuffled));
          expect(a !== undefined && b !== undefined && a.equals(b)).toBe(true);
        },
      ),
    );
  });
});
