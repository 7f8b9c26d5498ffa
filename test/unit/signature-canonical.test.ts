import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { percentEncode, v1StringToSign } from '../../src/api/signature.js';

/** The v1 StringToSign as rpc-util defines it: encode pairs, join, then encode the whole once more. */
function referenceStringToSign(method: string, params: Record<string, string>): string {
  const sdkEncode = (v: string) => encodeURIComponent(v).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const canonical = Object.keys(params).sort().map((k) => `${sdkEncode(k)}=${sdkEncode(params[k]!)}`).join('&');
  return `${method.toUpperCase()}&%2F&${encodeURIComponent(canonical)}`;
}

const awkward = ['', 'a b', "!'()*", '%', '%25', '+/=', 'é', '😀', '&=&', '~-._', 'x'.repeat(300), '2026-11-30T19:22:03Z'];

describe('v1StringToSign built already encoded', () => {
  it('equals the encode-then-encode-again definition for awkward and random values', () => {
    for (let round = 0; round < 200; round++) {
      const params: Record<string, string> = {
        Action: 'Encrypt',
        Timestamp: awkward[round % awkward.length]!,
        Plaintext: randomBytes(1 + (round % 97)).toString('base64'),
        Odd: awkward[(round * 7) % awkward.length]! + randomBytes(3).toString('latin1'),
        [`K${round}!'`]: awkward[(round * 5) % awkward.length]!,
      };
      expect(v1StringToSign('post', params)).toBe(referenceStringToSign('post', params));
    }
  });

  it('percentEncode escapes what the SDKs escape, and leaves unreserved text alone', () => {
    expect(percentEncode("a!b'c(d)e*f")).toBe('a%21b%27c%28d%29e%2Af');
    expect(percentEncode('abc-_.~XYZ09')).toBe('abc-_.~XYZ09');
    expect(percentEncode('a+b/c=')).toBe('a%2Bb%2Fc%3D');
    expect(percentEncode('a b')).toBe('a%20b');
  });
});
