import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { allActions } from '../../src/api/actions/index.js';
import { indexedSpecOf } from '../../src/api/indexed-params.js';
import { createAccessKey } from '../../src/services/access.js';
import { systemCaller } from '../../src/services/context.js';
import { type RawAnswer, encodeQuery, send, sendAcs3, sendV1, v1Params } from '../helpers/raw-rpc.js';
import { type Credentials, type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 13 §3/§4: hostile input reaches no store or HSM call and gets only documented 4xx
 * answers — on every action, signed by an admin, by a limited key-user, and unsigned.
 */

/** Every parameter name an action's schema accepts, indexed ones as `Name.1` / `Name.1.Field`. */
function fieldNamesOf(actionName: string): string[] {
  const action = allActions[actionName]!;
  const spec = indexedSpecOf(action.params);
  let schema: z.ZodTypeAny = action.params;
  while (schema instanceof z.ZodEffects) schema = schema.innerType();
  const names: string[] = [];
  for (const name of Object.keys((schema as z.AnyZodObject).shape)) {
    if (!name.endsWith('.N')) {
      names.push(name);
      continue;
    }
    const base = name.slice(0, -2);
    const fields = spec?.records?.[base];
    if (fields) names.push(...fields.map((f) => `${base}.1.${f}`));
    else names.push(`${base}.1`);
  }
  return names;
}

const ACTIONS = Object.keys(allActions).sort();
/** Plaintext is opaque text returned verbatim (alibaba-api.md §5.9): controls are allowed there. */
const FREE_TEXT = new Set(['Plaintext']);
const PAIRS = ACTIONS.flatMap((action) => fieldNamesOf(action).filter((f) => !FREE_TEXT.has(f)).map((field) => ({ action, field })));

const BOGUS: Credentials = { accessKeyId: 'LTAIbogusbogusbogusbogus', accessKeySecret: 'not-the-secret' };

let server: TestServer;
let keyUser: Credentials;
let hsmKeyId: string;
const answers: RawAnswer[] = [];

async function record(answer: Promise<RawAnswer>): Promise<RawAnswer> {
  const a = await answer;
  answers.push(a);
  return a;
}

function expectRefused(a: RawAnswer, code: string, status = 400): void {
  expect({ status: a.status, code: a.body['Code'] }, a.text).toEqual({ status, code });
}

beforeAll(async () => {
  server = await startServer();
  const user = await createAccessKey(server.kms.deps, { role: 'key-user', instanceIds: [server.hsmInstanceId] }, systemCaller);
  keyUser = { accessKeyId: user.accessKeyId, accessKeySecret: user.accessKeySecret };
  const created = await sendV1(server.endpoint, 'CreateKey', { DKMSInstanceId: server.hsmInstanceId }, server.admin);
  expect(created.status, created.text).toBe(200);
  hsmKeyId = (created.body['KeyMetadata'] as { KeyId: string }).KeyId;
});

afterAll(async () => {
  await server?.stop();
});

describe('hostile values on every action and field', () => {
  it('covers every action: each has at least one field or is parameterless', () => {
    expect(PAIRS.length).toBeGreaterThan(60);
    expect(new Set(PAIRS.map((p) => p.action)).size).toBeGreaterThan(ACTIONS.length - 3);
  });

  const callers: Array<[string, () => Credentials]> = [
    ['an admin', () => server.admin],
    ['a limited key-user', () => keyUser],
    ['an unsigned caller', () => BOGUS],
  ];
  const values: Array<[string, string]> = [
    ['NUL', 'key\u0000x'],
    ['a C0 control', 'key\u0001x'],
    ['ESC', '\u001b[31mred'],
    ['DEL', 'a\u007fb'],
  ];

  for (const [who, credentials] of callers) {
    for (const [what, value] of values) {
      it(`${what} in any field from ${who} → 400 InvalidParameter naming the field`, async () => {
        for (const { action, field } of PAIRS) {
          const a = await record(sendV1(server.endpoint, action, { [field]: value }, credentials()));
          expectRefused(a, 'InvalidParameter');
          expect(String(a.body['Message']), `${action}.${field}`).toContain(field);
        }
      });
    }
  }

  it('NUL in the alias form of KeyId and in a v1 AccessKeyId (before any signature check) → 400', async () => {
    expectRefused(await record(sendV1(server.endpoint, 'DescribeKey', { KeyId: 'alias/\u0000' }, server.admin)), 'InvalidParameter');
    const params = v1Params('DescribeKey', { KeyId: hsmKeyId }, { ...server.admin, accessKeyId: 'LTAI\u0000' });
    expectRefused(await record(send(server.endpoint, { path: `/?${encodeQuery(params)}` })), 'InvalidParameter');
  });

  it('NUL inside JSON-valued parameters that reach the store (Tags, TagKeys, Filters) is a 4xx, never a store error', async () => {
    const cases: Array<[string, Record<string, string>]> = [
      ['CreateKey', { Tags: JSON.stringify([{ TagKey: 'k\u0000', TagValue: 'v' }]) }],
      ['UntagResource', { KeyId: hsmKeyId, TagKeys: JSON.stringify(['k\u0000']) }],
      ['ListKeys', { Filters: JSON.stringify([{ Key: 'KeyState', Values: ['Enabled\u0000'] }]) }],
    ];
    for (const [action, params] of cases) {
      const a = await record(sendV1(server.endpoint, action, params, server.admin));
      expect(a.status, `${action}: ${a.text}`).toBeGreaterThanOrEqual(400);
      expect(a.status, `${action}: ${a.text}`).toBeLessThan(500);
    }
  });

  it('an EncryptionContext is only hashed into the AAD: escaped controls in it bind like any other text', async () => {
    const context = JSON.stringify({ 'a\u0000': 'b\u0001' });
    const enc = await record(sendV1(server.endpoint, 'Encrypt', { KeyId: hsmKeyId, Plaintext: 'x', EncryptionContext: context }, server.admin));
    expect(enc.status, enc.text).toBe(200);
    const blob = String(enc.body['CiphertextBlob']);
    const same = await record(sendV1(server.endpoint, 'Decrypt', { CiphertextBlob: blob, EncryptionContext: context }, server.admin));
    expect(same.body['Plaintext'], same.text).toBe('x');
    const other = await record(
      sendV1(server.endpoint, 'Decrypt', { CiphertextBlob: blob, EncryptionContext: JSON.stringify({ a: 'b\u0001' }) }, server.admin),
    );
    expect(other.status, other.text).toBe(400);
  });

  it('tab and line feed are ordinary in a Description, refused in a KeyId', async () => {
    const ok = await record(sendV1(server.endpoint, 'CreateKey', { DKMSInstanceId: server.hsmInstanceId, Description: 'line 1\n\tline 2' }, server.admin));
    expect(ok.status, ok.text).toBe(200);
    expect((ok.body['KeyMetadata'] as { Description: string }).Description).toBe('line 1\n\tline 2');
    expectRefused(await record(sendV1(server.endpoint, 'DescribeKey', { KeyId: `${hsmKeyId}\n` }, server.admin)), 'InvalidParameter');
  });

  it('a Plaintext with NUL and controls comes back verbatim from Decrypt', async () => {
    const plaintext = 'a\u0000b\u0001c\u001b\u007f\r\n';
    const enc = await record(sendV1(server.endpoint, 'Encrypt', { KeyId: hsmKeyId, Plaintext: plaintext }, server.admin));
    expect(enc.status, enc.text).toBe(200);
    const dec = await record(sendV1(server.endpoint, 'Decrypt', { CiphertextBlob: String(enc.body['CiphertextBlob']) }, server.admin));
    expect(dec.status, dec.text).toBe(200);
    expect(dec.body['Plaintext']).toBe(plaintext);
  });

  it('a Plaintext with a lone surrogate (ACS3 JSON body) is refused: it could not come back verbatim', async () => {
    for (const body of ['{"KeyId":"K","Plaintext":"a\\ud800b"}', '{"KeyId":"K","Plaintext":"\\udc00"}']) {
      const a = await record(
        sendAcs3(server.endpoint, { action: 'Encrypt', body: body.replace('K', hsmKeyId), contentType: 'application/json' }, server.admin),
      );
      expectRefused(a, 'InvalidParameter');
    }
    // A well-formed pair is fine.
    const ok = await record(
      sendAcs3(server.endpoint, { action: 'Encrypt', body: JSON.stringify({ KeyId: hsmKeyId, Plaintext: '😀' }), contentType: 'application/json' }, server.admin),
    );
    expect(ok.status, ok.text).toBe(200);
  });
});

describe('hostile shapes', () => {
  it('150,000 form parameters (1.3 MB) → 400 before anything else, signed or not', async () => {
    const body = Array.from({ length: 150_000 }, (_, i) => `P${i}=x`).join('&');
    for (const credentials of [server.admin, BOGUS]) {
      const params = v1Params('ListKeys', {}, credentials);
      const a = await record(
        send(server.endpoint, { path: `/?${encodeQuery(params)}`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body }),
      );
      expectRefused(a, 'InvalidParameter');
      expect(String(a.body['Message'])).toContain('at most');
    }
  });

  it('a JSON body nested 5,000 deep → 400 ParseRequestParameterException', async () => {
    const deep = `{"EncryptionContext":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`;
    for (const credentials of [server.admin, BOGUS]) {
      const a = await record(sendAcs3(server.endpoint, { action: 'ListKeys', body: deep, contentType: 'application/json' }, credentials));
      expectRefused(a, 'ParseRequestParameterException');
    }
  });

  it('a parameter given twice — in the query, or in the query and the JSON body — is refused', async () => {
    const params = v1Params('DescribeKey', { KeyId: hsmKeyId }, server.admin);
    const twice = `${encodeQuery(params)}&KeyId=${encodeURIComponent(hsmKeyId)}`;
    expectRefused(await record(send(server.endpoint, { path: `/?${twice}` })), 'InvalidParameter');
    const a = await record(
      sendAcs3(
        server.endpoint,
        { action: 'DescribeKey', query: { KeyId: hsmKeyId }, body: JSON.stringify({ KeyId: 'key-other' }), contentType: 'application/json' },
        server.admin,
      ),
    );
    expectRefused(a, 'InvalidParameter');
    expect(String(a.body['Message'])).toContain('only once');
  });

  it('a member given twice in one ACS3 JSON body is refused, not the last one taken (found by a probe)', async () => {
    // Written by hand: JSON.stringify cannot repeat a member. Escapes and nesting must not
    // confuse the scan: "Plain\u0074ext" is Plaintext, and the nested "Plaintext" is not top-level.
    for (const body of [
      `{"KeyId":"${hsmKeyId}","Plaintext":"first","Plaintext":"second"}`,
      `{"KeyId":"${hsmKeyId}","Plaintext":"first","Plain\\u0074ext":"second"}`,
    ]) {
      const a = await record(sendAcs3(server.endpoint, { action: 'Encrypt', body, contentType: 'application/json' }, server.admin));
      expectRefused(a, 'InvalidParameter');
      expect(String(a.body['Message'])).toContain('"Plaintext"');
      expect(String(a.body['Message'])).toContain('only once');
    }
    const nested = `{"KeyId":"${hsmKeyId}","Plaintext":"one","EncryptionContext":{"Plaintext":"x","a,\\"b":"{"}}`;
    const ok = await record(sendAcs3(server.endpoint, { action: 'Encrypt', body: nested, contentType: 'application/json' }, server.admin));
    expect(ok.status, ok.text).toBe(200);
  });

  it('names with = or &, controls or no known meaning are refused', async () => {
    for (const name of ['Key=Id', 'KeyId&x', 'Key\u0000Id', 'Tag.0.Key', 'Tag.1.Key.Extra', '__proto__', 'constructor']) {
      const a = await record(sendV1(server.endpoint, 'DescribeKey', { KeyId: hsmKeyId, [name]: 'x' }, server.admin));
      expectRefused(a, 'InvalidParameter');
    }
    const unknown = await record(sendV1(server.endpoint, 'Encrypt', { KeyId: hsmKeyId, Plaintext: 'x', Frobnicate: 'true' }, server.admin));
    expectRefused(unknown, 'InvalidParameter');
    expect(String(unknown.body['Message'])).toBe('The specified parameter "Frobnicate" is not valid. It is not a parameter of Encrypt.');
  });

  it('regression: a signed ACS3 query re-sent as one parameter name (%3D, %26) does not become another request', async () => {
    const before = await record(sendV1(server.endpoint, 'ListKeys', { PageSize: '100' }, server.admin));
    const query = { DKMSInstanceId: server.hsmInstanceId, KeySpec: 'Aliyun_AES_256' };
    // The canonical query of the two parameters is `DKMSInstanceId=kst-…&KeySpec=Aliyun_AES_256`;
    // so is that of one parameter named `DKMSInstanceId=kst-…&KeySpec`. Same signature.
    const smuggled = `${encodeURIComponent(`DKMSInstanceId=${server.hsmInstanceId}&KeySpec`)}=Aliyun_AES_256`;
    const a = await record(sendAcs3(server.endpoint, { action: 'CreateKey', query, rawQuery: smuggled }, server.admin));
    expectRefused(a, 'InvalidParameter');
    const after = await record(sendV1(server.endpoint, 'ListKeys', { PageSize: '100' }, server.admin));
    expect(after.body['TotalCount']).toBe(before.body['TotalCount']);
  });

  it('an ACS3 body whose content-type is not signed is refused, JSON like form', async () => {
    for (const [contentType, body] of [
      ['application/json', JSON.stringify({ KeyId: hsmKeyId })],
      ['application/x-www-form-urlencoded', `KeyId=${hsmKeyId}`],
    ] as const) {
      const a = await record(sendAcs3(server.endpoint, { action: 'DescribeKey', body, contentType, unsignedContentType: true }, server.admin));
      expectRefused(a, 'IncompleteSignature');
      const signed = await record(sendAcs3(server.endpoint, { action: 'DescribeKey', body, contentType }, server.admin));
      expect(signed.status, signed.text).toBe(200);
    }
  });

  it('a v1 request with a JSON body, or a body of another type, is refused rather than half-read', async () => {
    const params = v1Params('DescribeKey', { KeyId: hsmKeyId }, server.admin);
    for (const contentType of ['application/json', 'text/plain']) {
      const a = await record(
        send(server.endpoint, { path: `/?${encodeQuery(params)}`, headers: { 'content-type': contentType }, body: '{"KeyId":"key-other"}' }),
      );
      expectRefused(a, 'ParseRequestParameterException');
    }
  });

  it('a form body that is not UTF-8, or not percent-encoded UTF-8, is refused', async () => {
    const params = v1Params('ListKeys', {}, server.admin);
    const path = `/?${encodeQuery(params)}`;
    const headers = { 'content-type': 'application/x-www-form-urlencoded' };
    expectRefused(await record(send(server.endpoint, { path, headers, body: Buffer.from([0x41, 0x3d, 0xff, 0xfe]) })), 'ParseRequestParameterException');
    expectRefused(await record(send(server.endpoint, { path, headers, body: 'A=%ED%A0%80' })), 'InvalidParameter');
  });
});

describe('the server after a hostile burst', () => {
  it('is healthy, answered nothing with 5xx and logged no internal failure', async () => {
    // Its own burst, so this holds when the test runs alone: a NUL on every action, signed
    // and not, a 150,000-parameter body and a deep JSON body, all at once.
    const logStart = server.logs.length;
    const deep = `{"Filters":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const huge = Array.from({ length: 150_000 }, (_, i) => `P${i}=x`).join('&');
    const burst = await Promise.all([
      ...ACTIONS.flatMap((action) => [
        sendV1(server.endpoint, action, { KeyId: 'k\u0000' }, server.admin),
        sendV1(server.endpoint, action, { KeyId: 'k\u0000' }, BOGUS),
      ]),
      sendAcs3(server.endpoint, { action: 'ListKeys', body: deep, contentType: 'application/json' }, server.admin),
      send(server.endpoint, {
        path: `/?${encodeQuery(v1Params('ListKeys', {}, BOGUS))}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: huge,
      }),
    ]);
    expect(burst.length).toBe(ACTIONS.length * 2 + 2);
    expect(burst.filter((a) => a.status < 400 || a.status >= 500).map((a) => a.text)).toEqual([]);
    const refused = server.logs.slice(logStart);
    expect(refused.length).toBeGreaterThanOrEqual(burst.length);
    expect(refused.filter((line) => line.includes('"level":50'))).toEqual([]);
    expect(answers.filter((a) => a.status >= 500).map((a) => a.text)).toEqual([]);
    const health = await send(server.endpoint, { method: 'GET', path: '/health' });
    expect(health.status).toBe(200);
    const enc = await sendV1(server.endpoint, 'Encrypt', { KeyId: hsmKeyId, Plaintext: 'still here' }, server.admin);
    expect(enc.status, enc.text).toBe(200);
  });
});

describe('KMS_ALLOWED_HOSTS', () => {
  it('default (empty): a request signed for another endpoint is served, as its signature is valid', async () => {
    const a = await record(sendAcs3(server.endpoint, { action: 'ListKeys', host: 'kms.cn-shanghai.aliyuncs.com' }, server.admin));
    expect(a.status, a.text).toBe(200);
  });

  it('set: only the listed Host values are served, whatever the signature covers', async () => {
    const limited = await startServer({ env: { KMS_ALLOWED_HOSTS: 'kms.example.test, KMS.Example.Test:8443' } });
    try {
      const other = await sendAcs3(limited.endpoint, { action: 'ListKeys', host: 'kms.cn-shanghai.aliyuncs.com' }, limited.admin);
      expectRefused(other, 'InvalidParameter');
      expect(String(other.body['Message'])).toContain('KMS_ALLOWED_HOSTS');
      for (const host of ['kms.example.test', 'kms.example.test:8443']) {
        const ok = await sendAcs3(limited.endpoint, { action: 'ListKeys', host }, limited.admin);
        expect(ok.status, ok.text).toBe(200);
      }
    } finally {
      await limited.stop();
    }
  });
});
