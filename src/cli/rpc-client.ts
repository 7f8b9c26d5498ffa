/**
 * A tiny signed RPC client for the `kms` CLI's client verbs. It sends what the generated 3.x SDK
 * sends (shared alibaba-api.md §4.2, §4.4): `POST /?<business params>` with an empty body and
 * ACS3-HMAC-SHA256 headers, so the server sees our CLI exactly as it sees the real SDK.
 */
import { createHash, randomBytes } from 'node:crypto';
import { stringify } from 'node:querystring';
import { formatTimestamp, signAcs3 } from '../api/signature.js';

/** The only API version KMS speaks. */
export const KMS_API_VERSION = '2016-01-20';

const USER_AGENT = 'hsm-kms-cli/0.1.0';
const EMPTY_SHA256 = createHash('sha256').update('').digest('hex');

/** Credentials and where to send requests. */
export interface RpcClientOptions {
  /** Base URL, e.g. `http://127.0.0.1:8080`; any path must be `/`. */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly accessKeySecret: string;
  /** STS token; sent as `x-acs-security-token` with `x-acs-accesskey-id`, as the SDK does. */
  readonly securityToken?: string;
  /** Per-call timeout. Default 30 s. */
  readonly timeoutMs?: number;
  /** Injected for tests; defaults to the global `fetch`. */
  readonly fetch?: typeof fetch;
}

/** Parameter values as callers hold them; `undefined` is left out, the rest go through `String()`. */
export type RpcParams = Readonly<Record<string, string | number | boolean | undefined>>;

/** Everything needed to put one signed call on the wire. */
export interface SignedHttpRequest {
  readonly method: 'POST';
  readonly url: string;
  /** `/` — kept apart for verifiers. */
  readonly path: string;
  /** Encoded query string without the `?`. */
  readonly rawQuery: string;
  /** Lowercase names, including `host` and `authorization`. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/** Input to {@link buildSignedRequest}; `now` and `nonce` are fixed in tests. */
export interface BuildSignedRequestInput {
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly accessKeySecret: string;
  readonly securityToken?: string;
  readonly action: string;
  readonly params: RpcParams;
  readonly now?: Date;
  readonly nonce?: string;
}

/**
 * Builds (no I/O) the ACS3-HMAC-SHA256 request the SDK would send for `action(params)`.
 * @throws Error when the endpoint is not an http(s) URL with path `/`.
 */
export function buildSignedRequest(input: BuildSignedRequestInput): SignedHttpRequest {
  const base = new URL(input.endpoint);
  const httpish = base.protocol === 'http:' || base.protocol === 'https:';
  if (!httpish || base.pathname !== '/' || base.search !== '') {
    throw new Error(`The endpoint must be an http(s) URL without a path or query: ${input.endpoint}`);
  }

  // Flattening rules of OpenApiUtil.query (§4.2): top-level undefined is omitted, scalars String().
  const query: Record<string, string> = {};
  for (const key of Object.keys(input.params).sort()) {
    const value = input.params[key];
    if (value !== undefined) query[key] = String(value);
  }
  // Node's querystring.stringify is what the SDK uses to build the URL (§4.2).
  const rawQuery = stringify(query);

  // Emission order and contents of openapi-core 1.x (§4.4). `host` is URL.host: what fetch
  // itself puts in the Host header (port omitted when it is the scheme's default).
  const headers: Record<string, string> = {
    host: base.host,
    'x-acs-version': KMS_API_VERSION,
    'x-acs-action': input.action,
    'user-agent': USER_AGENT,
    'x-acs-date': formatTimestamp(input.now ?? new Date()),
    'x-acs-signature-nonce': input.nonce ?? randomBytes(32).toString('hex'),
    accept: 'application/json',
    'x-acs-content-sha256': EMPTY_SHA256,
  };
  if (input.securityToken) {
    headers['x-acs-accesskey-id'] = input.accessKeyId;
    headers['x-acs-security-token'] = input.securityToken;
  }
  headers['authorization'] = signAcs3({
    method: 'POST',
    path: '/',
    query,
    headers,
    accessKeyId: input.accessKeyId,
    accessKeySecret: input.accessKeySecret,
  }).authorization;

  return {
    method: 'POST',
    url: `${base.origin}/${rawQuery ? `?${rawQuery}` : ''}`,
    path: '/',
    rawQuery,
    headers,
    body: Buffer.alloc(0),
  };
}

/** A non-2xx answer, or a response that is not a JSON object. Never carries credentials. */
export class RpcError extends Error {
  override readonly name = 'RpcError';
  constructor(
    /** Alibaba error code (`Forbidden.KeyNotFound`), or `UnexpectedResponse` for non-JSON. */
    readonly code: string,
    message: string,
    readonly statusCode: number,
    readonly requestId?: string,
  ) {
    super(message);
  }
}

/** A signed KMS RPC client. */
export interface RpcClient {
  /**
   * Calls `action` and returns the JSON body.
   * @throws RpcError on a non-2xx status or a non-JSON-object body.
   */
  call(action: string, params?: RpcParams): Promise<Record<string, unknown>>;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const stringField = (o: Record<string, unknown>, ...names: string[]) => {
  for (const n of names) if (typeof o[n] === 'string') return o[n];
  return undefined;
};

/** Creates a client bound to one endpoint and one credential. */
export function createRpcClient(options: RpcClientOptions): RpcClient {
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 30_000;
  return {
    async call(action, params = {}) {
      const req = buildSignedRequest({ ...options, action, params });
      const res = await doFetch(req.url, {
        method: req.method,
        headers: req.headers,
        body: req.body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text();
      const headerRequestId = res.headers.get('x-acs-request-id') ?? undefined;
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      if (!isRecord(body)) {
        const message = `HTTP ${res.status}: the response is not a JSON object.`;
        throw new RpcError('UnexpectedResponse', message, res.status, headerRequestId);
      }
      if (!res.ok) {
        // Field names the SDKs read (§4.6): Code|code, Message|message, RequestId|requestId.
        throw new RpcError(
          stringField(body, 'Code', 'code') ?? `HTTP${res.status}`,
          stringField(body, 'Message', 'message') ?? `HTTP ${res.status}`,
          res.status,
          stringField(body, 'RequestId', 'requestId') ?? headerRequestId,
        );
      }
      return body;
    },
  };
}
