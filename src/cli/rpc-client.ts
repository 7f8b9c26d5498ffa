/**
 * A tiny signed RPC client for the `kms` CLI's client verbs. It sends what the generated 3.x SDK
 * sends (shared alibaba-api.md §4.2, §4.4): `POST /?<business params>` with an empty body and
 * ACS3-HMAC-SHA256 headers, so the server sees our CLI exactly as it sees the real SDK.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
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
  /** Injected for tests (the global `fetch` fits); defaults to {@link httpTransport}. */
  readonly fetch?: typeof fetch;
  /** Where the endpoint came from (`--endpoint`, `KMS_ENDPOINT`, a credentials file): named in connection errors. */
  readonly endpointSource?: string;
}

/** What the client needs of an HTTP answer (a fetch `Response` has it). */
export interface HttpAnswer {
  readonly status: number;
  readonly ok: boolean;
  readonly headers: { get(name: string): string | null };
  text(): Promise<string>;
}

/** Sends one request; rejects when no answer arrives (the error's `code` or `cause.code` says why). */
export type HttpTransport = (
  url: string,
  init: { method: string; headers: Readonly<Record<string, string>>; body: Buffer; signal: AbortSignal },
) => Promise<HttpAnswer>;

/**
 * The default transport: node:http (node:https for an https endpoint), not the global fetch,
 * whose first use in a process loads undici — about 60 ms of every CLI call.
 */
export const httpTransport: HttpTransport = async (url, init) => {
  const target = new URL(url);
  const client = target.protocol === 'https:' ? (await import('node:https')).default : http;
  return new Promise((resolve, reject) => {
    const request = client.request(target, { method: init.method, headers: { ...init.headers, 'content-length': String(init.body.length) }, signal: init.signal }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        const status = response.statusCode ?? 0;
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status,
          ok: status >= 200 && status < 300,
          headers: { get: (name) => [response.headers[name.toLowerCase()]].flat()[0] ?? null },
          text: async () => text,
        });
      });
    });
    request.on('error', reject);
    request.end(init.body);
  });
};

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

/**
 * The endpoint did not answer at all (refused, unknown host, timeout, reset): the message names
 * the endpoint, the likely cause and what to do. Never carries credentials.
 */
export class ConnectionError extends Error {
  override readonly name = 'ConnectionError';
  constructor(
    readonly endpoint: string,
    /** errno-style code of the cause (`ECONNREFUSED`, `ENOTFOUND`, `TimeoutError` …). */
    readonly causeCode: string,
    message: string,
  ) {
    super(message);
  }
}

/** Turns what fetch threw into a {@link ConnectionError} that says what probably happened. */
export function connectionError(error: unknown, endpoint: string, timeoutMs: number, endpointSource?: string): ConnectionError {
  // fetch puts the errno in `cause.code`; node:http in `code`; a timeout aborts (cause TimeoutError).
  const thrown = error as { code?: unknown; name?: unknown; cause?: { code?: unknown; name?: unknown; message?: unknown } } | undefined;
  const cause = thrown?.cause;
  const code =
    typeof thrown?.code === 'string' && thrown.code !== 'ABORT_ERR'
      ? thrown.code
      : typeof cause?.code === 'string'
        ? cause.code
        : cause?.name === 'TimeoutError' || thrown?.name === 'AbortError'
          ? 'TimeoutError'
          : typeof thrown?.name === 'string'
            ? thrown.name
            : 'Error';
  const origin = new URL(endpoint).origin;
  const from = endpointSource ? ` (endpoint from ${endpointSource})` : '';
  const likely: Record<string, string> = {
    ECONNREFUSED:
      'connection refused: no server is listening there. Is it running? Start one with `npm run quickstart` (or `kms serve`), or point --endpoint / KMS_ENDPOINT at the right host:port.',
    ENOTFOUND: 'the host name does not resolve: check --endpoint / KMS_ENDPOINT.',
    EAI_AGAIN: 'the host name could not be resolved right now (DNS): check --endpoint / KMS_ENDPOINT.',
    EHOSTUNREACH: 'the host is unreachable from here: check --endpoint / KMS_ENDPOINT and the network.',
    ECONNRESET: 'the connection was closed before an answer: is that a KMS endpoint (http, not https)?',
    UND_ERR_SOCKET: 'the connection was closed before an answer: is that a KMS endpoint (http, not https)?',
    TimeoutError: `no answer within ${timeoutMs / 1000} s: the server is overloaded or stuck, or a firewall drops the packets.`,
  };
  const reason =
    likely[code] ?? `${typeof cause?.message === 'string' ? cause.message : error instanceof Error ? error.message : String(error)} (${code}).`;
  return new ConnectionError(origin, code, `cannot reach the KMS at ${origin}${from}: ${reason}`);
}

/** A signed KMS RPC client. */
export interface RpcClient {
  /**
   * Calls `action` and returns the JSON body.
   * @throws RpcError on a non-2xx status or a non-JSON-object body.
   * @throws ConnectionError when the endpoint does not answer.
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
  const doFetch: typeof fetch | HttpTransport = options.fetch ?? httpTransport;
  const timeoutMs = options.timeoutMs ?? 30_000;
  return {
    async call(action, params = {}) {
      const req = buildSignedRequest({ ...options, action, params });
      let res: HttpAnswer;
      let text: string;
      try {
        res = await doFetch(req.url, {
          method: req.method,
          headers: req.headers,
          body: req.body,
          signal: AbortSignal.timeout(timeoutMs),
        });
        text = await res.text();
      } catch (error) {
        throw connectionError(error, options.endpoint, timeoutMs, options.endpointSource);
      }
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
