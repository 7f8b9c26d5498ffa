/**
 * Micro-benchmark of the RPC edge's pure steps for one signed v1 Encrypt (no I/O): what each
 * costs per request, in µs. `tsx scripts/profile-edge-micro.ts`
 */
import { randomBytes } from 'node:crypto';
import { formatTimestamp, parseSignedRequest, percentEncode, signV1, verifySignature } from '../src/api/signature.js';
import { collectParams } from '../src/api/request/collect-params.js';
import { allActions } from '../src/api/actions/index.js';
import { parseParams } from '../src/api/params.js';
import { assertKnownParams, knownParamsOf, COMMON_PARAMS } from '../src/api/request/known-params.js';
import { pino } from 'pino';

const secret = 'abcdefghijklmnopqrstuvwxyz0123';
function query(): string {
  const params: Record<string, string> = {
    Action: 'Encrypt', Format: 'JSON', Version: '2016-01-20', Timestamp: formatTimestamp(new Date()),
    SignatureNonce: randomBytes(16).toString('hex'), SignatureMethod: 'HMAC-SHA1', SignatureVersion: '1.0',
    AccessKeyId: 'LTAIabcdefghijklmnopqrst', KeyId: 'key-hzz6a1b2c3d4e5f6g7h8i9', Plaintext: Buffer.alloc(64, 'p').toString('base64'),
  };
  params.Signature = signV1({ method: 'POST', params, accessKeySecret: secret });
  return Object.entries(params).map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`).join('&');
}
const queries = Array.from({ length: 2000 }, query);
const headers = { host: '127.0.0.1:8080', 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'autocannon' };
const action = allActions['Encrypt']!;
const known = knownParamsOf(action);

function bench(label: string, fn: (q: string, i: number) => unknown): void {
  for (let i = 0; i < 20000; i++) fn(queries[i % queries.length]!, i);
  const n = 100_000;
  // CPU time, not wall time: the machine is shared.
  const start = process.cpuUsage();
  for (let i = 0; i < n; i++) fn(queries[i % queries.length]!, i);
  const used = process.cpuUsage(start);
  const us = (used.user + used.system) / n;
  console.log(`${label.padEnd(40)} ${us.toFixed(2).padStart(7)} µs`);
}
const raw = (q: string) => ({ method: 'POST', path: '/', rawQuery: q, headers, rawBody: Buffer.alloc(0) });
bench('collectParams', (q) => collectParams(raw(q)));
bench('collect + parseSignedRequest', (q) => { const r = raw(q); return parseSignedRequest(r, collectParams(r)); });
bench('collect + parse + verify (HMAC-SHA1)', (q) => { const r = raw(q); verifySignature(parseSignedRequest(r, collectParams(r)), secret); });
const signed = queries.map((q) => { const r = raw(q); return parseSignedRequest(r, collectParams(r)); });
bench('verify only', (_q, i) => verifySignature(signed[i % signed.length]!, secret));
bench('assertKnownParams + parseParams (zod)', (_q, i) => {
  const s = signed[i % signed.length]!;
  assertKnownParams('Encrypt', known, s.params);
  const b: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(s.params)) if (!COMMON_PARAMS.has(k)) b[k] = v;
  return parseParams(action.params, b);
});
const sink = pino({ level: 'info' }, { write: () => undefined });
bench('pino info line (to a no-op stream)', (_q, i) => sink.info({ requestId: 'ABCDEF01-2345-6789-ABCD-EF0123456789', action: 'Encrypt', accessKeyId: 'LTAIabcdefghijklmnopqrst', ms: i / 7 }, 'rpc'));
bench('JSON.stringify answer', (_q, i) => JSON.stringify({ RequestId: 'ABCDEF01-2345-6789-ABCD-EF0123456789', KeyId: 'key-hzz6a1b2c3d4e5f6g7h8i9', KeyVersionId: '2ab1a983-7072-4bbc-a582-584b5bd8bc6c', CiphertextBlob: 'x'.repeat(150 + (i & 1)) }));
