/**
 * Verification (server) and signing (our CLI client) of the two request signature schemes the
 * Alibaba Cloud SDKs use against KMS 2016-01-20 (shared alibaba-api.md §4.2–4.4):
 *
 * - `HMAC-SHA1` "signature v1": every common parameter rides in the query (kms20160120 1.2.0,
 *   openapi-client with `signatureAlgorithm: 'v2'`).
 * - `ACS3-HMAC-SHA256`: an `Authorization` header over a canonical request (openapi-client
 *   0.4.x, openapi-core 1.x, generated 2.x/3.x clients — the default today).
 *
 * Pure: no I/O, no clock. The caller reads the request, looks the AccessKeyId up, calls
 * {@link verifySignature} and {@link checkTimestamp}, and owns nonce replay protection.
 *
 * Decoding choice: query strings and form bodies are decoded as
 * `application/x-www-form-urlencoded` (`+` is a space, then percent-decoding). The SDKs send
 * `+` as `%2B` (Node's `querystring.stringify`, §4.2), so this is indistinguishable for them;
 * it also matches how the same bytes in a form body are read, so both schemes and both
 * parameter locations decode identically.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { KmsError, invalidParameter, missingParameter } from '../domain/errors.js';
import { type CollectedParams, collectParams } from './request/collect-params.js';

export type SignatureScheme = 'HMAC-SHA1' | 'ACS3-HMAC-SHA256';

/** The parts of an incoming HTTP request the signature covers, exactly as received. */
export interface RequestToVerify {
  /** HTTP method, e.g. `POST`. */
  readonly method: string;
  /** Path part of the request target, undecoded (`/` for every KMS RPC call). */
  readonly path: string;
  /** Everything after the first `?` of the request target, undecoded; `''` when absent. */
  readonly rawQuery: string;
  /** Header map with lowercase names, as `IncomingMessage.headers` gives it. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The request body bytes, exactly as received (empty for the SDKs' KMS calls). */
  readonly rawBody: Buffer;
}

/** A request whose signature parts are well formed; the signature itself is not yet checked. */
export interface SignedRequest {
  readonly scheme: SignatureScheme;
  readonly accessKeyId: string;
  /** `Timestamp` (v1) or `x-acs-date` (ACS3). Not yet checked against the clock. */
  readonly timestamp: Date;
  /** `SignatureNonce` (v1) or `x-acs-signature-nonce` (ACS3). Replay checks are the caller's. */
  readonly nonce: string;
  /** STS token: `SecurityToken` (v1) or `x-acs-security-token` (ACS3). */
  readonly securityToken?: string;
  /**
   * Decoded parameters from the query and a form-urlencoded body (common + business ones;
   * v1's `Signature` removed). Null-prototype object: keys are client-controlled.
   */
  readonly params: Readonly<Record<string, string>>;
  /** `Action` param (v1, signed) or `x-acs-action` header (ACS3, signed). */
  readonly action?: string;
  /** `Version` param (v1) or `x-acs-version` header (ACS3). */
  readonly version?: string;
  /** Recomputes the signature with `secret` and compares in constant time. */
  verify(secret: string): boolean;
}

/** Alibaba's window for `Timestamp` / `x-acs-date` (§4.4: 15 minutes, `RequestTimeTooSkewed`). */
export const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;

/** Longest nonce accepted; the SDKs send 32 or 64 hex chars, Java sends a 36-char UUID. */
const MAX_NONCE_LENGTH = 128;

const ACS3_ALGORITHM = 'ACS3-HMAC-SHA256';

// ---------------------------------------------------------------------------------------------
// Errors. Messages never carry the secret or the signature we computed.

/** `IncompleteSignature`: a signature part is missing or malformed. */
export const incompleteSignature = () =>
  new KmsError('IncompleteSignature', 'The request signature does not conform to Alibaba Cloud standards.');

/** `SignatureDoesNotMatch`: well-formed request, wrong signature (or wrong secret). */
export const signatureDoesNotMatch = () =>
  new KmsError('SignatureDoesNotMatch', 'Specified signature is not matched with our calculation.');

const malformedTimestamp = (name: string) =>
  new KmsError(
    'IllegalTimestamp',
    `The specified parameter "${name}" is not valid. It must be a UTC time in the form YYYY-MM-DDThh:mm:ssZ.`,
  );

const skewedTimestamp = (maxSkewMs: number) =>
  new KmsError(
    'IllegalTimestamp',
    `The request timestamp is not within ${Math.round(maxSkewMs / 60_000)} minutes of the server time.`,
  );

// ---------------------------------------------------------------------------------------------
// Encoding helpers shared by signer and verifier.

/** RFC 3986 unreserved characters: what percent-encoding leaves as it is. */
const UNRESERVED = /^[A-Za-z0-9_.~-]*$/;

/**
 * RFC 3986 percent-encoding as the SDKs' `encode()`: `encodeURIComponent` plus `! ' ( ) *`
 * (openapi-util / rpc-util). Used for v1 keys and values and for ACS3 query values.
 */
export function percentEncode(value: string): string {
  if (UNRESERVED.test(value)) return value;
  const encoded = encodeURIComponent(value);
  // Base64 and timestamps hold none of these: skip the replace's callback pass then.
  return SDK_EXTRA.test(encoded) ? encoded.replace(SDK_EXTRA_ALL, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`) : encoded;
}

/** What `encodeURIComponent` leaves as it is but the SDKs' `encode()` escapes. */
const SDK_EXTRA = /[!'()*]/;
const SDK_EXTRA_ALL = /[!'()*]/g;

/** `YYYY-MM-DDThh:mm:ssZ`, the format of `Timestamp` and `x-acs-date` (§4.3, §4.4). */
export function formatTimestamp(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

const TIMESTAMP_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?Z$/;

/**
 * Parses `YYYY-MM-DDThh:mm:ssZ` (optional milliseconds tolerated). Rejects anything else,
 * including calendar overflow such as `2026-02-30`, with `IllegalTimestamp`.
 */
export function parseTimestamp(value: string | undefined, name: string): Date {
  // Concurrent requests carry the same second: reuse the last parse (a Date is mutable, so a copy).
  if (value !== undefined && value === lastTimestamp.text) return new Date(lastTimestamp.ms);
  const date = parseTimestampText(value, name);
  lastTimestamp = { text: value!, ms: date.getTime() };
  return date;
}

let lastTimestamp: { text: string; ms: number } = { text: '', ms: 0 };

function parseTimestampText(value: string | undefined, name: string): Date {
  const m = value === undefined ? null : TIMESTAMP_RE.exec(value);
  if (!m) throw malformedTimestamp(name);
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const ms = m[7] === undefined ? 0 : Number(m[7].padEnd(3, '0'));
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms));
  const roundTrips =
    date.getUTCFullYear() === y &&
    date.getUTCMonth() === mo - 1 &&
    date.getUTCDate() === d &&
    date.getUTCHours() === h &&
    date.getUTCMinutes() === mi &&
    date.getUTCSeconds() === s;
  if (!roundTrips) throw malformedTimestamp(name);
  return date;
}

/**
 * Refuses a request timestamp more than `maxSkewMs` away from `now`, in either direction.
 * @throws KmsError `IllegalTimestamp`
 */
export function checkTimestamp(ts: Date, now: Date, maxSkewMs: number = MAX_CLOCK_SKEW_MS): void {
  const skew = Math.abs(now.getTime() - ts.getTime());
  if (!Number.isFinite(skew) || skew > maxSkewMs) throw skewedTimestamp(maxSkewMs);
}

/** Joins node's rare array-valued headers the way the SDK joins repeated ones (§4.4). */
function headerValue(headers: RequestToVerify['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Constant-time string comparison; a length mismatch leaks only the (public) length. */
function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

const sortedKeys = (o: Readonly<Record<string, string>>) => Object.keys(o).sort();

// ---------------------------------------------------------------------------------------------
// Scheme 1: HMAC-SHA1 signature v1 (§4.3).

/**
 * v1 StringToSign: `METHOD&%2F&pct(sorted pct(k)=pct(v) joined by &)`. Signs every entry of
 * `params`; the caller leaves `Signature` out. The path is always `/` (the SDKs hard-code it).
 */
export function v1StringToSign(method: string, params: Readonly<Record<string, string>>): string {
  // Sort on the raw key, then encode: rpc-util's normalize() does it in that order. The
  // canonical string `pct(k)=pct(v)&…` is then percent-encoded once more; built here already
  // encoded (`=` → %3D, `&` → %26, `%` → %25: the only characters percentEncode's output holds
  // besides unreserved ones), which saves a second pass over the whole string per request.
  let canonical = '';
  for (const k of sortedKeys(params)) {
    if (canonical !== '') canonical += '%26';
    canonical += `${encodedAgain(percentEncode(k))}%3D${encodedAgain(percentEncode(params[k]!))}`;
  }
  return `${method.toUpperCase()}&%2F&${canonical}`;
}

/** `encodeURIComponent` of percentEncode's output: only its `%` change. */
function encodedAgain(encoded: string): string {
  return encoded.indexOf('%') === -1 ? encoded : encoded.replace(PERCENT_ALL, '%25');
}

const PERCENT_ALL = /%/g;

/** Input to {@link signV1}: every query (and form) parameter that will be sent, minus `Signature`. */
export interface V1SignInput {
  readonly method: string;
  readonly params: Readonly<Record<string, string>>;
  readonly accessKeySecret: string;
}

/** `Signature` = base64(HMAC-SHA1(secret + '&', StringToSign)), as `rpc-util.getSignatureV1`. */
export function signV1(input: V1SignInput): string {
  return createHmac('sha1', `${input.accessKeySecret}&`)
    .update(v1StringToSign(input.method, input.params))
    .digest('base64');
}

function parseV1(req: RequestToVerify, collected: CollectedParams): SignedRequest {
  // v1 signs the query and form parameters; the edge refused any other body for v1.
  const signature = collected.all['Signature'];
  // Every parameter but Signature, in a null-prototype record (names are client-controlled).
  const params = Object.create(null) as Record<string, string>;
  for (const name in collected.all) if (name !== 'Signature') params[name] = collected.all[name]!;

  const accessKeyId = params['AccessKeyId'];
  if (!accessKeyId) throw missingParameter('AccessKeyId');
  if (!signature) throw incompleteSignature();

  const method = params['SignatureMethod'];
  if (!method) throw incompleteSignature();
  if (method !== 'HMAC-SHA1') throw invalidParameter('SignatureMethod', 'Only HMAC-SHA1 is supported.');
  const version = params['SignatureVersion'];
  if (!version) throw incompleteSignature();
  if (version !== '1.0') throw invalidParameter('SignatureVersion', 'Only 1.0 is supported.');

  const nonce = params['SignatureNonce'];
  if (!nonce) throw incompleteSignature();
  if (nonce.length > MAX_NONCE_LENGTH) throw invalidParameter('SignatureNonce', 'It is too long.');
  const timestamp = parseTimestamp(params['Timestamp'], 'Timestamp');

  const httpMethod = req.method.toUpperCase();
  return {
    scheme: 'HMAC-SHA1',
    accessKeyId,
    timestamp,
    nonce,
    ...(params['SecurityToken'] ? { securityToken: params['SecurityToken'] } : {}),
    params,
    // The 1.2.0 SDK also sends x-acs-action, but unsigned: only the signed Action counts.
    ...(params['Action'] !== undefined ? { action: params['Action'] } : {}),
    ...(params['Version'] !== undefined ? { version: params['Version'] } : {}),
    verify: (secret) => safeEqual(signature, signV1({ method: httpMethod, params, accessKeySecret: secret })),
  };
}

// ---------------------------------------------------------------------------------------------
// Scheme 2: ACS3-HMAC-SHA256 (§4.4).

/**
 * CanonicalURI as openapi-util's getAuthorization builds it. `String.replace` with a string
 * pattern rewrites only the first match; copied as is so odd paths still agree with the SDK.
 */
function canonicalUri(path: string): string {
  return path.replace('+', '%20').replace('*', '%2A').replace('%7E', '~');
}

/** CanonicalQuery: sorted `k=pct(v)`; the key is NOT encoded (openapi-util, §4.4). */
function canonicalQuery(params: Readonly<Record<string, string>>): string {
  return sortedKeys(params)
    .map((k) => `${k}=${percentEncode(params[k]!)}`)
    .join('&');
}

function acs3CanonicalRequest(parts: {
  method: string;
  path: string;
  query: Readonly<Record<string, string>>;
  /** Signed header names in order, with their canonical values. */
  headers: ReadonlyArray<readonly [string, string]>;
  hashedPayload: string;
}): string {
  const canonicalHeaders = parts.headers.map(([k, v]) => `${k}:${v}\n`).join('');
  const signedHeaders = parts.headers.map(([k]) => k).join(';');
  return [
    parts.method.toUpperCase(),
    canonicalUri(parts.path),
    canonicalQuery(parts.query),
    canonicalHeaders,
    signedHeaders,
    parts.hashedPayload,
  ].join('\n');
}

function acs3Signature(secret: string, canonicalRequest: string): string {
  const stringToSign = `${ACS3_ALGORITHM}\n${sha256Hex(canonicalRequest)}`;
  return createHmac('sha256', secret).update(stringToSign).digest('hex');
}

/** Input to {@link signAcs3}. */
export interface Acs3SignInput {
  readonly method: string;
  /** Request path, `/` for RPC calls. */
  readonly path: string;
  /** Decoded business parameters that go in the query. */
  readonly query: Readonly<Record<string, string>>;
  /**
   * Headers as they will be sent. Every `x-acs-*`, `host` and `content-type` among them is
   * signed — so set `x-acs-content-sha256`, `x-acs-date` and `x-acs-signature-nonce` first.
   */
  readonly headers: Readonly<Record<string, string>>;
  /** Body bytes; the HashedPayload line is sha256(body). Omit for the SDKs' empty body. */
  readonly body?: Buffer | string;
  readonly accessKeyId: string;
  readonly accessKeySecret: string;
}

/** Result of {@link signAcs3}. */
export interface Acs3Signature {
  /** Value of the `Authorization` header. */
  readonly authorization: string;
  /** Lowercase hex HMAC-SHA256. */
  readonly signature: string;
  /** `;`-joined sorted lowercase names. */
  readonly signedHeaders: string;
  readonly canonicalRequest: string;
}

/** Signs like `openapi-util.getAuthorization` with ACS3-HMAC-SHA256 (§4.4). */
export function signAcs3(input: Acs3SignInput): Acs3Signature {
  // Group by lowercase name; a repeated header becomes its sorted trimmed values joined by ','.
  const grouped = new Map<string, string[]>();
  for (const [name, value] of Object.entries(input.headers)) {
    const lower = name.toLowerCase();
    if (!lower.startsWith('x-acs-') && lower !== 'host' && lower !== 'content-type') continue;
    grouped.set(lower, [...(grouped.get(lower) ?? []), value.trim()]);
  }
  const headers = [...grouped.keys()].sort().map((k) => [k, grouped.get(k)!.sort().join(',')] as const);
  const canonicalRequest = acs3CanonicalRequest({
    method: input.method,
    path: input.path,
    query: input.query,
    headers,
    hashedPayload: sha256Hex(input.body ?? ''),
  });
  const signature = acs3Signature(input.accessKeySecret, canonicalRequest);
  const signedHeaders = headers.map(([k]) => k).join(';');
  return {
    authorization:
      `${ACS3_ALGORITHM} Credential=${input.accessKeyId},` +
      `SignedHeaders=${signedHeaders},Signature=${signature}`,
    signature,
    signedHeaders,
    canonicalRequest,
  };
}

interface Acs3Authorization {
  readonly credential: string;
  readonly signedHeaders: readonly string[];
  readonly signature: string;
}

/** Parses `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`. */
function parseAuthorization(value: string): Acs3Authorization {
  const space = value.indexOf(' ');
  const algorithm = space < 0 ? value : value.slice(0, space);
  if (algorithm !== ACS3_ALGORITHM) {
    // ACS3-HMAC-SM3 / ACS3-RSA-SHA256 are real but not served (§4.4); anything else is junk.
    if (/^ACS3-[A-Z0-9-]+$/.test(algorithm)) {
      throw invalidParameter('SignatureAlgorithm', `Only ${ACS3_ALGORITHM} is supported.`);
    }
    throw incompleteSignature();
  }
  const fields = new Map<string, string>();
  for (const part of value.slice(space + 1).split(',')) {
    const eq = part.indexOf('=');
    const key = part.slice(0, eq).trim();
    if (eq < 0 || fields.has(key) || !['Credential', 'SignedHeaders', 'Signature'].includes(key)) {
      throw incompleteSignature();
    }
    fields.set(key, part.slice(eq + 1).trim());
  }
  const credential = fields.get('Credential');
  const signedHeaders = fields.get('SignedHeaders')?.split(';');
  const signature = fields.get('Signature');
  if (!credential || !signedHeaders || !signature || !/^[0-9a-fA-F]{64}$/.test(signature)) {
    throw incompleteSignature();
  }
  const wellFormed = signedHeaders.every((h) => /^[a-z0-9-]+$/.test(h));
  if (!wellFormed || new Set(signedHeaders).size !== signedHeaders.length) {
    throw incompleteSignature();
  }
  return { credential, signedHeaders, signature: signature.toLowerCase() };
}

function parseAcs3(req: RequestToVerify, collected: CollectedParams, authorization: string): SignedRequest {
  const params = collected.all;
  const auth = parseAuthorization(authorization);
  const header = (name: string) => headerValue(req.headers, name);

  const timestamp = parseTimestamp(header('x-acs-date'), 'x-acs-date');
  const nonce = header('x-acs-signature-nonce');
  if (!nonce) throw incompleteSignature();
  if (nonce.length > MAX_NONCE_LENGTH) throw invalidParameter('x-acs-signature-nonce', 'It is too long.');

  // The body is bound to the signature through x-acs-content-sha256 (HashedPayload line).
  const contentSha256 = header('x-acs-content-sha256');
  if (!contentSha256) throw incompleteSignature();
  const hashedPayload = sha256Hex(req.rawBody);
  if (contentSha256.toLowerCase() !== hashedPayload) {
    throw invalidParameter('x-acs-content-sha256', 'It must be the hex SHA-256 of the request body.');
  }

  // Everything the server acts on must be covered: host, every x-acs-* header sent (action,
  // version, date, nonce, STS token…), and content-type when it made us read a form body.
  const signed = new Set(auth.signedHeaders);
  const sentAcs = Object.keys(req.headers)
    .map((h) => h.toLowerCase())
    .filter((h) => h.startsWith('x-acs-'));
  const mustSign = ['host', ...sentAcs];
  // A body is read as a form or as JSON by its content-type: whoever signed the body must
  // have signed how it is to be read, or the same bytes could be re-read another way.
  if (req.rawBody.length > 0) mustSign.push('content-type');
  if (mustSign.some((h) => !signed.has(h))) throw incompleteSignature();
  const headers = auth.signedHeaders.map((name) => {
    const value = header(name);
    if (value === undefined) throw incompleteSignature();
    return [name, value.trim()] as const;
  });

  // STS (§4.4): the key id header, when sent, must name the same key as the Credential.
  const keyIdHeader = header('x-acs-accesskey-id');
  if (keyIdHeader !== undefined && keyIdHeader !== auth.credential) throw incompleteSignature();
  const securityToken = header('x-acs-security-token');
  const action = header('x-acs-action');
  const version = header('x-acs-version');

  const canonicalRequest = acs3CanonicalRequest({
    method: req.method,
    path: req.path,
    query: collected.query,
    headers,
    hashedPayload,
  });
  return {
    scheme: 'ACS3-HMAC-SHA256',
    accessKeyId: auth.credential,
    timestamp,
    nonce,
    ...(securityToken ? { securityToken } : {}),
    params,
    ...(action !== undefined ? { action } : {}),
    ...(version !== undefined ? { version } : {}),
    verify: (secret) => safeEqual(auth.signature, acs3Signature(secret, canonicalRequest)),
  };
}

// ---------------------------------------------------------------------------------------------
// Entry points.

/**
 * Recognises the scheme (an `Authorization` header means ACS3, otherwise v1) and checks that
 * every signature part is present and well formed. Does not check the signature or the clock.
 *
 * @throws KmsError `InvalidParameter` (duplicate or badly encoded parameter, unsupported
 *   algorithm, body hash mismatch), `MissingParameter` (v1 without `AccessKeyId`),
 *   `IncompleteSignature` (missing/malformed signature parts, unsigned `x-acs-*` headers),
 *   `IllegalTimestamp` (missing or malformed `Timestamp` / `x-acs-date`).
 */
export function parseSignedRequest(req: RequestToVerify, collected: CollectedParams = collectParams(req)): SignedRequest {
  const authorization = headerValue(req.headers, 'authorization');
  return authorization !== undefined ? parseAcs3(req, collected, authorization) : parseV1(req, collected);
}

/**
 * Checks the signature with the caller's secret for `signed.accessKeyId`.
 * @throws KmsError `SignatureDoesNotMatch`
 */
export function verifySignature(signed: SignedRequest, secret: string): void {
  if (!signed.verify(secret)) throw signatureDoesNotMatch();
}
