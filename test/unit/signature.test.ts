import { stringify } from 'node:querystring';
import OpenApiUtilModule from '@alicloud/openapi-util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkTimestamp,
  formatTimestamp,
  parseSignedRequest,
  parseTimestamp,
  percentEncode,
  signAcs3,
  signV1,
  v1StringToSign,
  verifySignature,
  type RequestToVerify,
} from '../../src/api/signature.js';
import { KmsError } from '../../src/domain/errors.js';
import { SIGNATURE_VECTORS, VECTOR_SECRET, type SignatureVector } from '../fixtures/signature-vectors.js';

// The SDK's own signing helpers, to compare against on random inputs. Node hands ESM the whole
// module.exports (class under `.default`); vitest's interop already unwraps it.
type OpenApiUtilClass = typeof OpenApiUtilModule.default;
const interop = OpenApiUtilModule as unknown as OpenApiUtilClass | { default: OpenApiUtilClass };
const OpenApiUtil: OpenApiUtilClass = 'default' in interop ? interop.default : interop;
type TeaRequest = Parameters<OpenApiUtilClass['getAuthorization']>[0];

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const V1_COMMON = new Set([
  'Action', 'Format', 'Timestamp', 'Version', 'SignatureNonce', 'SignatureMethod',
  'SignatureVersion', 'AccessKeyId', 'Signature', 'SecurityToken',
]);

const toRequest = (v: SignatureVector, over: Partial<RequestToVerify> = {}): RequestToVerify => ({
  method: v.method,
  path: v.path,
  rawQuery: v.rawQuery,
  headers: { ...v.headers },
  rawBody: Buffer.alloc(0),
  ...over,
});

/** The KmsError code `fn` throws (fails the test if it throws something else or nothing). */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(KmsError);
    return (e as KmsError).code;
  }
  throw new Error('expected a KmsError');
}

/** Decodes with URLSearchParams — independent of the parser under test. */
const decodeQuery = (raw: string): Record<string, string> => Object.fromEntries(new URLSearchParams(raw));

/** Appends `x` to the first business parameter's value (every vector has one). */
function tamperQuery(raw: string): string {
  const pairs = raw.split('&');
  const i = pairs.findIndex((p) => !V1_COMMON.has(p.split('=')[0]!));
  pairs[i] = `${pairs[i]}x`;
  return pairs.join('&');
}

const acs3Vector = SIGNATURE_VECTORS.find((v) => v.id === 'B1')!;
const stsAcs3Vector = SIGNATURE_VECTORS.find((v) => v.id === 'E2')!;
const v1Vector = SIGNATURE_VECTORS.find((v) => v.id === 'A1')!;

describe.each(SIGNATURE_VECTORS.map((v) => [`${v.id} ${v.scheme} ${v.action}`, v] as const))(
  'vector %s',
  (_name, v) => {
    const query = decodeQuery(v.rawQuery);

    it('parses the signed parts', () => {
      const signed = parseSignedRequest(toRequest(v));
      expect(signed.scheme).toBe(v.scheme);
      expect(signed.action).toBe(v.action);
      expect(signed.version).toBe('2016-01-20');
      const sts = v.id.startsWith('E');
      expect(signed.accessKeyId).toBe(sts ? 'STS.testAccessKeyId' : 'testAccessKeyId');
      expect(signed.securityToken).toBe(sts ? 'sts-token-xyz' : undefined);
      const ts = v.scheme === 'HMAC-SHA1' ? query['Timestamp'] : v.headers['x-acs-date'];
      expect(formatTimestamp(signed.timestamp)).toBe(ts);
      expect(signed.nonce).toBe(v.scheme === 'HMAC-SHA1' ? query['SignatureNonce'] : v.headers['x-acs-signature-nonce']);
      expect(signed.params['Signature']).toBeUndefined();
      for (const [k, value] of Object.entries(query)) if (k !== 'Signature') expect(signed.params[k]).toBe(value);
    });

    it(`verifies with ${VECTOR_SECRET}`, () => {
      const signed = parseSignedRequest(toRequest(v));
      expect(signed.verify(VECTOR_SECRET)).toBe(true);
      expect(() => verifySignature(signed, VECTOR_SECRET)).not.toThrow();
    });

    it('fails with another secret, without leaking either signature or the secret', () => {
      const signed = parseSignedRequest(toRequest(v));
      expect(signed.verify('otherAccessKeySecret')).toBe(false);
      let message = '';
      expect(
        codeOf(() => {
          try {
            verifySignature(signed, 'otherAccessKeySecret');
          } catch (e) {
            message = (e as Error).message;
            throw e;
          }
        }),
      ).toBe('SignatureDoesNotMatch');
      expect(message).toBe('Specified signature is not matched with our calculation.');
    });

    it('fails when a query value is tampered with', () => {
      const signed = parseSignedRequest(toRequest(v, { rawQuery: tamperQuery(v.rawQuery) }));
      expect(codeOf(() => verifySignature(signed, VECTOR_SECRET))).toBe('SignatureDoesNotMatch');
    });

    it('fails when a signed header or the body changes', () => {
      const headers = { ...v.headers, host: '127.0.0.1:18081' };
      const signed = parseSignedRequest(toRequest(v, { headers }));
      // v1 does not sign headers; ACS3 signs host.
      expect(signed.verify(VECTOR_SECRET)).toBe(v.scheme === 'HMAC-SHA1');
    });

    if (v.scheme === 'HMAC-SHA1') {
      it('signV1 reproduces the StringToSign and Signature byte for byte', () => {
        const { Signature: expected, ...params } = query;
        expect(v1StringToSign(v.method, params)).toBe(v.stringToSign);
        expect(signV1({ method: v.method, params, accessKeySecret: VECTOR_SECRET })).toBe(expected);
      });
    } else {
      it('signAcs3 reproduces the CanonicalRequest and Authorization byte for byte', () => {
        const { authorization, ...headers } = v.headers;
        const out = signAcs3({
          method: v.method,
          path: v.path,
          query,
          headers,
          accessKeyId: query['AccessKeyId'] ?? headers['x-acs-accesskey-id'] ?? 'testAccessKeyId',
          accessKeySecret: VECTOR_SECRET,
        });
        if (v.canonicalRequest !== undefined) expect(out.canonicalRequest).toBe(v.canonicalRequest);
        expect(out.authorization).toBe(authorization);
      });
    }
  },
);

describe('ACS3-HMAC-SHA256 malformed requests', () => {
  const withAuth = (v: SignatureVector, auth: string) => toRequest(v, { headers: { ...v.headers, authorization: auth } });
  const auth = acs3Vector.headers['authorization']!;

  it.each([
    ['no Signature', auth.replace(/,Signature=[0-9a-f]+$/, '')],
    ['no SignedHeaders', auth.replace(/,SignedHeaders=[^,]+/, '')],
    ['no Credential', auth.replace(/Credential=[^,]+,/, '')],
    ['empty Credential', auth.replace(/Credential=[^,]+,/, 'Credential=,')],
    ['a short Signature', auth.replace(/Signature=([0-9a-f]+)$/, 'Signature=abc')],
    ['an unknown field', `${auth},Region=cn`],
    ['a repeated field', `${auth},Signature=${'0'.repeat(64)}`],
    ['uppercase SignedHeaders', auth.replace('SignedHeaders=host', 'SignedHeaders=Host')],
    ['a ROA-style header', 'acs testAccessKeyId:abc='],
    ['only the algorithm', 'ACS3-HMAC-SHA256'],
  ])('refuses %s with IncompleteSignature', (_name, value) => {
    expect(codeOf(() => parseSignedRequest(withAuth(acs3Vector, value)))).toBe('IncompleteSignature');
  });

  it('refuses the other ACS3 algorithms with InvalidParameter', () => {
    const sm3 = auth.replace('ACS3-HMAC-SHA256', 'ACS3-HMAC-SM3');
    expect(codeOf(() => parseSignedRequest(withAuth(acs3Vector, sm3)))).toBe('InvalidParameter');
  });

  it('refuses a SignedHeaders list that leaves out x-acs-action, so the action cannot be swapped', () => {
    const unsignedAction = auth.replace('x-acs-action;', '');
    expect(codeOf(() => parseSignedRequest(withAuth(acs3Vector, unsignedAction)))).toBe('IncompleteSignature');
  });

  it.each(['host', 'x-acs-date', 'x-acs-signature-nonce', 'x-acs-content-sha256'])(
    'refuses a SignedHeaders list without %s',
    (name) => {
      const value = auth.replace(new RegExp(`(?<==|;)${name}(;|,)`), '');
      expect(value).not.toBe(auth);
      expect(codeOf(() => parseSignedRequest(withAuth(acs3Vector, value)))).toBe('IncompleteSignature');
    },
  );

  it('refuses an x-acs-* header that is not signed', () => {
    const req = toRequest(acs3Vector, { headers: { ...acs3Vector.headers, 'x-acs-extra': '1' } });
    expect(codeOf(() => parseSignedRequest(req))).toBe('IncompleteSignature');
  });

  it('refuses a signed header that was not sent', () => {
    const { 'x-acs-credentials-provider': _dropped, ...headers } = acs3Vector.headers;
    expect(codeOf(() => parseSignedRequest(toRequest(acs3Vector, { headers })))).toBe('IncompleteSignature');
  });

  it('detects a swapped signed x-acs-action', () => {
    const headers = { ...acs3Vector.headers, 'x-acs-action': 'ScheduleKeyDeletion' };
    const signed = parseSignedRequest(toRequest(acs3Vector, { headers }));
    expect(signed.action).toBe('ScheduleKeyDeletion');
    expect(signed.verify(VECTOR_SECRET)).toBe(false);
  });

  it('refuses a missing or malformed x-acs-date with IllegalTimestamp', () => {
    const { 'x-acs-date': _date, ...headers } = acs3Vector.headers;
    expect(codeOf(() => parseSignedRequest(toRequest(acs3Vector, { headers })))).toBe('IllegalTimestamp');
    const bad = { ...acs3Vector.headers, 'x-acs-date': 'Sun, 22 Nov 2026 18:23:48 GMT' };
    expect(codeOf(() => parseSignedRequest(toRequest(acs3Vector, { headers: bad })))).toBe('IllegalTimestamp');
  });

  it('refuses a missing nonce or content hash with IncompleteSignature', () => {
    for (const name of ['x-acs-signature-nonce', 'x-acs-content-sha256']) {
      const headers: Record<string, string> = { ...acs3Vector.headers };
      delete headers[name];
      expect(codeOf(() => parseSignedRequest(toRequest(acs3Vector, { headers })))).toBe('IncompleteSignature');
    }
  });

  it('refuses a body that does not match x-acs-content-sha256', () => {
    const headers = { ...acs3Vector.headers, 'content-type': 'application/x-www-form-urlencoded' };
    const req = toRequest(acs3Vector, { headers, rawBody: Buffer.from('KeyId=other') });
    expect(codeOf(() => parseSignedRequest(req))).toBe('InvalidParameter');
  });

  it('refuses an STS x-acs-accesskey-id that differs from the Credential', () => {
    const headers = { ...stsAcs3Vector.headers, 'x-acs-accesskey-id': 'STS.someoneElse' };
    expect(codeOf(() => parseSignedRequest(toRequest(stsAcs3Vector, { headers })))).toBe('IncompleteSignature');
  });

  it('binds a form body through x-acs-content-sha256 and returns its parameters', () => {
    const body = 'Plaintext=aGVsbG8%3D&EncryptionContext=%7B%22a%22%3A%22b%22%7D';
    const headers: Record<string, string> = {
      host: 'kms.local',
      'x-acs-version': '2016-01-20',
      'x-acs-action': 'Encrypt',
      'x-acs-date': '2026-11-22T18:23:52Z',
      'x-acs-signature-nonce': 'n-1',
      'x-acs-content-sha256': OpenApiUtil.hexEncode(OpenApiUtil.hash(Buffer.from(body), 'ACS3-HMAC-SHA256')),
      'content-type': 'application/x-www-form-urlencoded',
    };
    const { authorization } = signAcs3({
      method: 'POST', path: '/', query: { KeyId: 'key-1' }, headers, body,
      accessKeyId: 'ak', accessKeySecret: 's',
    });
    const req: RequestToVerify = {
      method: 'POST', path: '/', rawQuery: 'KeyId=key-1',
      headers: { ...headers, authorization }, rawBody: Buffer.from(body),
    };
    const signed = parseSignedRequest(req);
    expect(signed.params).toEqual(Object.assign(Object.create(null), {
      KeyId: 'key-1', Plaintext: 'aGVsbG8=', EncryptionContext: '{"a":"b"}',
    }));
    expect(signed.verify('s')).toBe(true);
    // A different body with a matching hash header is still not the signed one.
    const other = 'Plaintext=b3RoZXI%3D';
    const otherHash = OpenApiUtil.hexEncode(OpenApiUtil.hash(Buffer.from(other), 'ACS3-HMAC-SHA256'));
    const forged = {
      ...req,
      rawBody: Buffer.from(other),
      headers: { ...req.headers, 'x-acs-content-sha256': otherHash },
    };
    expect(parseSignedRequest(forged).verify('s')).toBe(false);
  });
});

describe('HMAC-SHA1 v1 malformed requests', () => {
  const dropParam = (raw: string, name: string) => raw.split('&').filter((p) => !p.startsWith(`${name}=`)).join('&');
  const v1 = (rawQuery: string) => toRequest(v1Vector, { rawQuery });

  it.each([
    ['AccessKeyId', 'MissingParameter'],
    ['Signature', 'IncompleteSignature'],
    ['SignatureMethod', 'IncompleteSignature'],
    ['SignatureVersion', 'IncompleteSignature'],
    ['SignatureNonce', 'IncompleteSignature'],
    ['Timestamp', 'IllegalTimestamp'],
  ])('without %s → %s', (name, code) => {
    expect(codeOf(() => parseSignedRequest(v1(dropParam(v1Vector.rawQuery, name))))).toBe(code);
  });

  it('reports the missing AccessKeyId by name', () => {
    expect(() => parseSignedRequest(v1(dropParam(v1Vector.rawQuery, 'AccessKeyId')))).toThrow(
      'The parameter "AccessKeyId" is needed but not provided.',
    );
  });

  it('refuses other signature methods and versions with InvalidParameter', () => {
    const sha256 = v1Vector.rawQuery.replace('SignatureMethod=HMAC-SHA1', 'SignatureMethod=HMAC-SHA256');
    expect(codeOf(() => parseSignedRequest(v1(sha256)))).toBe('InvalidParameter');
    const v2 = v1Vector.rawQuery.replace('SignatureVersion=1.0', 'SignatureVersion=2.0');
    expect(codeOf(() => parseSignedRequest(v1(v2)))).toBe('InvalidParameter');
  });

  it('refuses a duplicate parameter, in the query or across query and form body', () => {
    expect(codeOf(() => parseSignedRequest(v1(`${v1Vector.rawQuery}&KeyId=other`)))).toBe('InvalidParameter');
    const req = toRequest(v1Vector, {
      headers: { ...v1Vector.headers, 'content-type': 'application/x-www-form-urlencoded' },
      rawBody: Buffer.from('KeyId=other'),
    });
    expect(codeOf(() => parseSignedRequest(req))).toBe('InvalidParameter');
  });

  it('refuses bad percent-encoding and empty names with InvalidParameter', () => {
    expect(codeOf(() => parseSignedRequest(v1(`${v1Vector.rawQuery}&Bad=%E0%A4%A`)))).toBe('InvalidParameter');
    expect(codeOf(() => parseSignedRequest(v1(`${v1Vector.rawQuery}&=x`)))).toBe('InvalidParameter');
  });

  it('refuses a malformed Timestamp with IllegalTimestamp', () => {
    const bad = v1Vector.rawQuery.replace('2026-11-22T18%3A23%3A45Z', '2026-11-22%2018%3A23%3A45');
    expect(codeOf(() => parseSignedRequest(v1(bad)))).toBe('IllegalTimestamp');
  });

  it('takes the action from the signed Action, not the unsigned x-acs-action header', () => {
    const headers = { ...v1Vector.headers, 'x-acs-action': 'ScheduleKeyDeletion' };
    const signed = parseSignedRequest(toRequest(v1Vector, { headers }));
    expect(signed.action).toBe('DescribeKey');
    expect(signed.verify(VECTOR_SECRET)).toBe(true);
  });

  it('signs and verifies form-body parameters too', () => {
    const params: Record<string, string> = {
      Action: 'Encrypt', Format: 'json', Version: '2016-01-20', Timestamp: '2026-11-22T18:23:45Z',
      SignatureNonce: 'abc', SignatureMethod: 'HMAC-SHA1', SignatureVersion: '1.0', AccessKeyId: 'ak',
      KeyId: 'key-1', Plaintext: 'aGk+/w==',
    };
    const { KeyId: _k, Plaintext: _p, ...queryParams } = params;
    const Signature = signV1({ method: 'POST', params, accessKeySecret: 's' });
    const req: RequestToVerify = {
      method: 'POST',
      path: '/',
      rawQuery: stringify({ ...queryParams, Signature }),
      headers: { host: 'kms.local', 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
      rawBody: Buffer.from(stringify({ KeyId: 'key-1', Plaintext: 'aGk+/w==' })),
    };
    const signed = parseSignedRequest(req);
    expect(signed.params['Plaintext']).toBe('aGk+/w==');
    expect(signed.verify('s')).toBe(true);
    const tampered = { ...req, rawBody: Buffer.from('KeyId=key-2&Plaintext=aGk%2B%2Fw%3D%3D') };
    expect(parseSignedRequest(tampered).verify('s')).toBe(false);
  });

  it("decodes '+' in the query as a space (form-urlencoded), and %2B as '+'", () => {
    const params: Record<string, string> = {
      Action: 'DescribeKey', Timestamp: '2026-11-22T18:23:45Z', SignatureNonce: 'n',
      SignatureMethod: 'HMAC-SHA1', SignatureVersion: '1.0', AccessKeyId: 'ak', KeyId: 'a b+c',
    };
    const Signature = encodeURIComponent(signV1({ method: 'POST', params, accessKeySecret: 's' }));
    const { KeyId: _keyId, ...rest } = params;
    const rawQuery = `${stringify(rest)}&KeyId=a+b%2Bc&Signature=${Signature}`;
    const signed = parseSignedRequest({ method: 'POST', path: '/', rawQuery, headers: {}, rawBody: Buffer.alloc(0) });
    expect(signed.params['KeyId']).toBe('a b+c');
    expect(signed.verify('s')).toBe(true);
  });
});

describe('timestamps', () => {
  const now = new Date('2026-11-22T18:23:45Z');
  const min = 60_000;

  it.each([-14, -1, 0, 1, 14, -15, 15])('accepts %i minutes of skew', (m) => {
    expect(() => checkTimestamp(new Date(now.getTime() + m * min), now)).not.toThrow();
  });

  it.each([-16, 16, -60 * 24])('refuses %i minutes of skew with IllegalTimestamp', (m) => {
    expect(codeOf(() => checkTimestamp(new Date(now.getTime() + m * min), now))).toBe('IllegalTimestamp');
    expect(() => checkTimestamp(new Date(now.getTime() + m * min), now)).toThrow(/15 minutes/);
  });

  it('refuses an invalid Date', () => {
    expect(codeOf(() => checkTimestamp(new Date(Number.NaN), now))).toBe('IllegalTimestamp');
  });

  it('parses the SDK format and refuses near misses', () => {
    expect(parseTimestamp('2026-11-22T18:23:45Z', 'Timestamp').toISOString()).toBe('2026-11-22T18:23:45.000Z');
    expect(parseTimestamp('2026-11-22T18:23:45.5Z', 'Timestamp').toISOString()).toBe('2026-11-22T18:23:45.500Z');
    const nearMisses = [
      '2026-02-30T00:00:00Z',
      '2026-11-22T24:00:00Z',
      '2026-11-22T18:23:45',
      '2026-11-22T18:23:45+08:00',
      '1795458225',
      '',
    ];
    for (const bad of nearMisses) {
      expect(codeOf(() => parseTimestamp(bad, 'Timestamp'))).toBe('IllegalTimestamp');
    }
    expect(formatTimestamp(new Date('2026-11-22T18:23:45.999Z'))).toBe('2026-11-22T18:23:45Z');
  });
});

describe('signers agree with the SDK helpers on random input', () => {
  // Names and values the request edge admits (api/request/collect-params.ts): SDK-shaped
  // names, and any text without control characters.
  const key = fc.stringMatching(/^[A-Za-z][A-Za-z0-9]{0,15}(\.[1-9][0-9]{0,2}(\.[A-Za-z][A-Za-z0-9]{0,7})?)?$/);
  const value = fc.string({ unit: 'binary', maxLength: 40 }).filter((v) => !/[\x00-\x1f\x7f]/.test(v));
  const params = fc.dictionary(key, value, { maxKeys: 8 });

  it('percentEncode matches RFC 3986 as the SDK does', () => {
    expect(percentEncode("a+b/c=d !'()*~")).toBe('a%2Bb%2Fc%3Dd%20%21%27%28%29%2A~');
  });

  it('signV1 = openapi-util getRPCSignature, and parseSignedRequest verifies it', () => {
    fc.assert(
      fc.property(params, fc.string({ minLength: 1, maxLength: 30 }), (business, secret) => {
        const all = {
          ...business,
          Action: 'Encrypt', Timestamp: '2026-11-22T18:23:45Z', SignatureNonce: 'n',
          SignatureMethod: 'HMAC-SHA1', SignatureVersion: '1.0', AccessKeyId: 'ak',
        };
        const signature = signV1({ method: 'POST', params: all, accessKeySecret: secret });
        expect(signature).toBe(OpenApiUtil.getRPCSignature(all, 'POST', secret));
        const rawQuery = stringify({ ...all, Signature: signature });
        const signed = parseSignedRequest({ method: 'POST', path: '/', rawQuery, headers: {}, rawBody: Buffer.alloc(0) });
        expect(signed.verify(secret)).toBe(true);
      }),
    );
  });

  it('signAcs3 = openapi-util getAuthorization, and parseSignedRequest verifies it', () => {
    fc.assert(
      fc.property(params, fc.string({ minLength: 1, maxLength: 30 }), (query, secret) => {
        const headers: Record<string, string> = {
          host: '127.0.0.1:18080',
          'x-acs-version': '2016-01-20',
          'x-acs-action': 'Encrypt',
          'user-agent': 'test',
          'x-acs-date': '2026-11-22T18:23:48Z',
          'x-acs-signature-nonce': 'abc',
          accept: 'application/json',
          'x-acs-content-sha256': EMPTY_SHA256,
        };
        const ours = signAcs3({ method: 'POST', path: '/', query, headers, accessKeyId: 'ak', accessKeySecret: secret });
        const teaRequest = { method: 'POST', pathname: '/', query, headers } as unknown as TeaRequest;
        expect(ours.authorization).toBe(
          OpenApiUtil.getAuthorization(teaRequest, 'ACS3-HMAC-SHA256', EMPTY_SHA256, 'ak', secret),
        );
        const signed = parseSignedRequest({
          method: 'POST', path: '/', rawQuery: stringify(query),
          headers: { ...headers, authorization: ours.authorization }, rawBody: Buffer.alloc(0),
        });
        expect(signed.verify(secret)).toBe(true);
      }),
    );
  });
});
