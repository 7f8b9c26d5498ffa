import { describe, expect, it } from 'vitest';
import { checkTimestamp, parseSignedRequest, verifySignature } from '../../src/api/signature.js';
import { RpcError, buildSignedRequest, createRpcClient } from '../../src/cli/rpc-client.js';

const credentials = {
  endpoint: 'http://127.0.0.1:8080',
  accessKeyId: 'testAccessKeyId',
  accessKeySecret: 'testAccessKeySecret',
};

const toVerify = (req: ReturnType<typeof buildSignedRequest>) => ({
  method: req.method,
  path: req.path,
  rawQuery: req.rawQuery,
  headers: req.headers,
  rawBody: req.body,
});

describe('buildSignedRequest', () => {
  it('produces a request parseSignedRequest verifies', () => {
    const now = new Date('2026-11-22T18:23:48Z');
    const req = buildSignedRequest({
      ...credentials,
      action: 'Encrypt',
      params: {
        KeyId: 'key-1234',
        Plaintext: 'aGk+/w==',
        EncryptionContext: '{"a":"b"}',
        DryRun: false,
        Skip: undefined,
        N: 3,
      },
      now,
      nonce: 'fixed-nonce',
    });
    expect(req.url).toBe(`http://127.0.0.1:8080/?${req.rawQuery}`);
    expect(req.rawQuery).toBe(
      'DryRun=false&EncryptionContext=%7B%22a%22%3A%22b%22%7D&KeyId=key-1234&N=3&Plaintext=aGk%2B%2Fw%3D%3D',
    );
    expect(req.headers).toMatchObject({
      host: '127.0.0.1:8080',
      'x-acs-version': '2016-01-20',
      'x-acs-action': 'Encrypt',
      'x-acs-date': '2026-11-22T18:23:48Z',
      'x-acs-signature-nonce': 'fixed-nonce',
      'x-acs-content-sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    });

    const signed = parseSignedRequest(toVerify(req));
    expect(signed.scheme).toBe('ACS3-HMAC-SHA256');
    expect(signed.accessKeyId).toBe('testAccessKeyId');
    expect(signed.action).toBe('Encrypt');
    expect(signed.params).toEqual(
      Object.assign(Object.create(null), {
        KeyId: 'key-1234',
        Plaintext: 'aGk+/w==',
        EncryptionContext: '{"a":"b"}',
        DryRun: 'false',
        N: '3',
      }),
    );
    expect(() => verifySignature(signed, 'testAccessKeySecret')).not.toThrow();
    expect(signed.verify('wrong')).toBe(false);
    expect(() => checkTimestamp(signed.timestamp, now)).not.toThrow();
  });

  it('signs the STS token headers', () => {
    const req = buildSignedRequest({
      ...credentials,
      accessKeyId: 'STS.ak',
      securityToken: 'tok',
      action: 'DescribeKey',
      params: { KeyId: 'k' },
    });
    const signed = parseSignedRequest(toVerify(req));
    expect(signed.securityToken).toBe('tok');
    expect(signed.verify('testAccessKeySecret')).toBe(true);
  });

  it('uses a fresh 64-hex nonce and the current time by default', () => {
    const a = buildSignedRequest({ ...credentials, action: 'ListKeys', params: {} });
    const b = buildSignedRequest({ ...credentials, action: 'ListKeys', params: {} });
    expect(a.headers['x-acs-signature-nonce']).toMatch(/^[0-9a-f]{64}$/);
    expect(a.headers['x-acs-signature-nonce']).not.toBe(b.headers['x-acs-signature-nonce']);
    expect(a.url).toBe('http://127.0.0.1:8080/');
    expect(() => checkTimestamp(parseSignedRequest(toVerify(a)).timestamp, new Date())).not.toThrow();
  });

  it('refuses endpoints with a path or a non-http scheme', () => {
    expect(() => buildSignedRequest({ ...credentials, endpoint: 'http://h/kms', action: 'ListKeys', params: {} })).toThrow();
    expect(() => buildSignedRequest({ ...credentials, endpoint: 'ftp://h', action: 'ListKeys', params: {} })).toThrow();
  });
});

describe('createRpcClient', () => {
  const jsonResponse = (status: number, body: unknown, headers: Record<string, string> = {}) =>
    new Response(typeof body === 'string' ? body : JSON.stringify(body), {
      status,
      headers: { 'content-type': 'application/json;charset=utf-8', ...headers },
    });

  it('sends the signed request and returns the JSON body', async () => {
    let seen: Request | undefined;
    const client = createRpcClient({
      ...credentials,
      fetch: async (input, init) => {
        seen = new Request(input, init);
        return jsonResponse(200, { RequestId: 'r-1', KeyMetadata: { KeyId: 'key-1' } });
      },
    });
    await expect(client.call('DescribeKey', { KeyId: 'key-1' })).resolves.toEqual({
      RequestId: 'r-1',
      KeyMetadata: { KeyId: 'key-1' },
    });
    expect(seen?.method).toBe('POST');
    expect(seen?.url).toBe('http://127.0.0.1:8080/?KeyId=key-1');
    expect(seen?.headers.get('x-acs-action')).toBe('DescribeKey');
    expect(seen?.headers.get('authorization')).toMatch(/^ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders=host;/);
  });

  it('throws RpcError with the Alibaba fields on a JSON error body', async () => {
    const client = createRpcClient({
      ...credentials,
      fetch: async () =>
        jsonResponse(404, {
          RequestId: 'req-err-0001',
          HostId: 'kms.cn-hangzhou.aliyuncs.com',
          Code: 'Forbidden.KeyNotFound',
          Message: 'The specified Key is not found.',
        }),
    });
    const err = await client.call('DescribeKey', { KeyId: 'nope' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect(err).toMatchObject({
      name: 'RpcError',
      code: 'Forbidden.KeyNotFound',
      statusCode: 404,
      requestId: 'req-err-0001',
      message: 'The specified Key is not found.',
    });
  });

  it('throws RpcError UnexpectedResponse on a non-JSON body, keeping the request id header', async () => {
    const client = createRpcClient({
      ...credentials,
      fetch: async () => new Response('Bad Gateway', { status: 502, headers: { 'x-acs-request-id': 'req-502' } }),
    });
    await expect(client.call('ListKeys', {})).rejects.toMatchObject({
      code: 'UnexpectedResponse',
      statusCode: 502,
      requestId: 'req-502',
    });
  });
});
