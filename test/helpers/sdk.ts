import { createRequire } from 'node:module';
import type { Credentials } from './server.js';

const require = createRequire(import.meta.url);

/* The real Alibaba SDKs, loaded as their CommonJS packages ship. */
const KMS = require('@alicloud/kms20160120') as typeof import('@alicloud/kms20160120');
const OpenApi = require('@alicloud/openapi-client') as OpenApiModule;
const TeaUtil = require('@alicloud/tea-util') as { RuntimeOptions: new (o: object) => object };
const OpenApiUtil = (require('@alicloud/openapi-util') as { default: { query(q: Record<string, unknown>): Record<string, string> } }).default;

type OpenApiModule = {
  default: new (config: object) => { callApi(params: object, request: object, runtime: object): Promise<{ body: Record<string, any>; statusCode: number }> };
  Config: new (o: object) => object;
  Params: new (o: object) => object;
  OpenApiRequest: new (o: object) => object;
};

export { KMS };

/**
 * The SDKs' default 5 s connect timeout is shorter than a loaded 2-core CI machine sometimes
 * needs while other test files generate RSA keys and spawn CLIs; the server is not what is
 * being timed here.
 */
const SDK_TIMEOUTS = { connectTimeout: 30_000, readTimeout: 60_000 };

/** `@alicloud/kms20160120@1.2.0`, pointed at the test server. */
export function legacyClient(endpoint: string, credentials: Credentials) {
  // rpc-client's Config is a plain options bag at run time; its declared type wants tea's toMap().
  const config = {
    endpoint,
    protocol: 'http',
    regionId: 'cn-hangzhou',
    accessKeyId: credentials.accessKeyId,
    accessKeySecret: credentials.accessKeySecret,
    ...SDK_TIMEOUTS,
  } as unknown as ConstructorParameters<typeof KMS.default>[0];
  return new KMS.default(config);
}

export type CallApi = (action: string, query?: Record<string, unknown>) => Promise<Record<string, any>>;

/**
 * `@alicloud/openapi-client@0.4.15` `callApi`, the transport of the 3.x SDK: ACS3-HMAC-SHA256
 * by default, HMAC-SHA1 with `signatureAlgorithm: 'v2'`. Returns the response body.
 */
export function openApiClient(endpoint: string, credentials: Credentials, options: { signatureAlgorithm?: 'v2' } = {}): CallApi {
  const client = new OpenApi.default(
    new OpenApi.Config({
      endpoint,
      protocol: 'http',
      accessKeyId: credentials.accessKeyId,
      accessKeySecret: credentials.accessKeySecret,
      ...options,
    }),
  );
  return async (action, query = {}) => {
    const params = new OpenApi.Params({
      action,
      version: '2016-01-20',
      protocol: 'HTTPS',
      pathname: '/',
      method: 'POST',
      authType: 'AK',
      style: 'RPC',
      reqBodyType: 'formData',
      bodyType: 'json',
    });
    const response = await client.callApi(params, new OpenApi.OpenApiRequest({ query: OpenApiUtil.query(query) }), new TeaUtil.RuntimeOptions(SDK_TIMEOUTS));
    return response.body;
  };
}

/** Runs `fn` expecting an SDK error; returns `{code, statusCode, data}` (1.2.0 appends "Error" to codes: stripped). */
export async function sdkError(fn: () => Promise<unknown>): Promise<{ code: string; statusCode?: number; message: string; data: any }> {
  try {
    await fn();
  } catch (error) {
    const e = error as { code?: string; statusCode?: number; message: string; data?: any };
    const code = e.data?.Code ?? String(e.code ?? '').replace(/Error$/, '');
    return { code, statusCode: e.statusCode ?? e.data?.HttpStatus, message: e.message, data: e.data };
  }
  throw new Error('expected the SDK call to fail, but it succeeded');
}
