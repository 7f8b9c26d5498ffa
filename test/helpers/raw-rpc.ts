import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import { formatTimestamp, percentEncode, signAcs3, signV1 } from '../../src/api/signature.js';
import type { Credentials } from './server.js';

/**
 * Hand-built signed requests, for what no SDK sends: hostile names and values, odd bodies,
 * duplicated parameters. Signed with the service's own signers (checked against the SDKs'
 * signers in test/unit/signature.test.ts), so the server reaches its real checks.
 */

export interface RawAnswer {
  status: number;
  body: Record<string, unknown>;
  text: string;
}

/** The encoded query of `params` (names and values percent-encoded as the SDKs do). */
export function encodeQuery(params: Readonly<Record<string, string>>): string {
  return Object.entries(params)
    .map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`)
    .join('&');
}

/** Sends one HTTP request and reads the answer as JSON (when it is JSON). */
export function send(
  endpoint: string,
  request: { method?: string; path: string; headers?: Record<string, string>; body?: Buffer | string },
): Promise<RawAnswer> {
  const [host, port] = endpoint.split(':');
  const body = request.body === undefined ? undefined : Buffer.from(request.body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host,
        port: Number(port),
        method: request.method ?? 'POST',
        path: request.path,
        headers: { ...(request.headers ?? {}), 'content-length': String(body?.length ?? 0) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            // not JSON: the caller sees the text
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, text });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

/** v1 (HMAC-SHA1) common parameters plus `params`, signed; the caller may alter the result. */
export function v1Params(action: string, params: Readonly<Record<string, string>>, credentials: Credentials): Record<string, string> {
  const all: Record<string, string> = {
    Action: action,
    Format: 'json',
    Version: '2016-01-20',
    Timestamp: formatTimestamp(new Date()),
    SignatureNonce: randomUUID().replace(/-/g, ''),
    SignatureMethod: 'HMAC-SHA1',
    SignatureVersion: '1.0',
    AccessKeyId: credentials.accessKeyId,
    ...params,
  };
  return { ...all, Signature: signV1({ method: 'POST', params: all, accessKeySecret: credentials.accessKeySecret }) };
}

/** A v1 request with every parameter in the query. */
export function sendV1(endpoint: string, action: string, params: Readonly<Record<string, string>>, credentials: Credentials): Promise<RawAnswer> {
  return send(endpoint, { path: `/?${encodeQuery(v1Params(action, params, credentials))}` });
}

export interface Acs3Request {
  action: string;
  query?: Readonly<Record<string, string>>;
  body?: string;
  contentType?: string;
  /** Leave content-type out of SignedHeaders although it is sent. */
  unsignedContentType?: boolean;
  /** Host header to send and sign (default: the endpoint). */
  host?: string;
  /** Replaces the encoded query after signing (to re-send signed bytes under other names). */
  rawQuery?: string;
}

/** An ACS3-HMAC-SHA256 request signed over `query`, `body` and the headers. */
export function sendAcs3(endpoint: string, request: Acs3Request, credentials: Credentials): Promise<RawAnswer> {
  const body = request.body ?? '';
  const headers: Record<string, string> = {
    host: request.host ?? endpoint,
    'x-acs-version': '2016-01-20',
    'x-acs-action': request.action,
    'x-acs-date': formatTimestamp(new Date()),
    'x-acs-signature-nonce': randomUUID().replace(/-/g, ''),
    'x-acs-content-sha256': createHash('sha256').update(body).digest('hex'),
  };
  if (request.contentType && !request.unsignedContentType) headers['content-type'] = request.contentType;
  const query = request.query ?? {};
  const signed = signAcs3({
    method: 'POST',
    path: '/',
    query,
    headers,
    body,
    accessKeyId: credentials.accessKeyId,
    accessKeySecret: credentials.accessKeySecret,
  });
  const sent: Record<string, string> = { ...headers, authorization: signed.authorization };
  if (request.contentType && request.unsignedContentType) sent['content-type'] = request.contentType;
  const rawQuery = request.rawQuery ?? encodeQuery(query);
  return send(endpoint, { path: rawQuery ? `/?${rawQuery}` : '/', headers: sent, body });
}
