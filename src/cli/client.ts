/**
 * Shared setup of the `kms` client verbs (key, alias, tag …): connection options, where
 * credentials come from, and how an API refusal is reported. The verbs speak the RPC API
 * with signed requests (rpc-client.ts signs ACS3 exactly as the SDK does), so the server
 * treats the CLI like any SDK client, authorization included.
 */
import path from 'node:path';
import type { Command } from 'commander';
import { readCredentials } from '../services/credentials-file.js';
import { type RpcClient, RpcError, type RpcParams, createRpcClient } from './rpc-client.js';
import { print } from './output.js';

export interface ConnectionFlags {
  endpoint?: string;
  accessKeyId?: string;
  accessKeySecret?: string;
  credentials?: string;
  table?: boolean;
}

/** Adds the connection flags and `--table` to a client verb. */
export function clientCommand(command: Command): Command {
  return command
    .option('--endpoint <host:port|url>', 'API endpoint (env KMS_ENDPOINT; default: the credentials file)')
    .option('--access-key-id <id>', 'access key id (env KMS_ACCESS_KEY_ID)')
    .option('--access-key-secret <secret>', 'access key secret (env KMS_ACCESS_KEY_SECRET)')
    .option('--credentials <file>', 'credentials JSON written by the server at first start (default: <KMS_DATA_DIR or .kms>/credentials.json)')
    .option('--table', 'print a readable table instead of JSON');
}

export interface ClientSettings {
  endpoint: string;
  accessKeyId: string;
  accessKeySecret: string;
  /** `--endpoint`, `KMS_ENDPOINT` or the credentials file: connection errors name it. */
  endpointSource: string;
}

/**
 * Each setting from its flag, else the environment (`KMS_ENDPOINT`, `KMS_ACCESS_KEY_ID`,
 * `KMS_ACCESS_KEY_SECRET`, or the SDKs' `ALIBABA_CLOUD_ACCESS_KEY_*`), else the credentials
 * file the server writes at first start (`{AccessKeyId, AccessKeySecret, Endpoint}`, 0600).
 * An endpoint without a scheme (`127.0.0.1:8080`, the SDK's form) means http.
 * @throws Error naming the three places to look when something is missing.
 */
export async function clientSettings(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): Promise<ClientSettings> {
  const file = flags.credentials ?? path.join(env.KMS_DATA_DIR ?? '.kms', 'credentials.json');
  const stored = await readCredentials(file);
  const endpoint = flags.endpoint ?? env.KMS_ENDPOINT ?? stored?.Endpoint;
  const endpointSource =
    flags.endpoint !== undefined
      ? '--endpoint'
      : env.KMS_ENDPOINT !== undefined
        ? 'KMS_ENDPOINT'
        : `${file}, written by the server when it last started`;
  const accessKeyId = flags.accessKeyId ?? env.KMS_ACCESS_KEY_ID ?? env.ALIBABA_CLOUD_ACCESS_KEY_ID ?? stored?.AccessKeyId;
  const accessKeySecret = flags.accessKeySecret ?? env.KMS_ACCESS_KEY_SECRET ?? env.ALIBABA_CLOUD_ACCESS_KEY_SECRET ?? stored?.AccessKeySecret;
  if (!endpoint || !accessKeyId || !accessKeySecret) {
    throw new Error(
      `No endpoint or credentials: ${stored ? `${file} has no endpoint` : `no ${file}`} (a server writes it when it starts: \`npm run quickstart\`; or set KMS_DATA_DIR to its data dir), ` +
        'and neither --endpoint/--access-key-id/--access-key-secret nor KMS_ENDPOINT/KMS_ACCESS_KEY_ID/KMS_ACCESS_KEY_SECRET are given.',
    );
  }
  return { endpoint: /^https?:\/\//.test(endpoint) ? endpoint : `http://${endpoint}`, accessKeyId, accessKeySecret, endpointSource };
}

/** A signed client for one invocation. */
export interface KmsClient {
  call(action: string, params?: RpcParams): Promise<Record<string, unknown>>;
}

/**
 * Runs a client verb. An API refusal is printed as `Code: Message (RequestId)` on stderr and
 * the process exits 1; what the verb returns is printed (JSON, or a table with `--table`).
 */
export async function runClientVerb(flags: ConnectionFlags, verb: (client: KmsClient) => Promise<unknown>): Promise<void> {
  const rpc: RpcClient = createRpcClient(await clientSettings(flags));
  try {
    print(await verb(rpc), flags);
  } catch (error) {
    if (!(error instanceof RpcError)) throw error;
    process.stderr.write(`${error.code}: ${error.message}${error.requestId ? ` (${error.requestId})` : ''}\n`);
    process.exitCode = 1;
  }
}

/** Follows PageNumber until TotalCount items are read; `pick` takes a page's items out of its wrapper. */
export async function allPages<T>(
  fetchPage: (pageNumber: number, pageSize: number) => Promise<Record<string, unknown>>,
  pick: (body: Record<string, unknown>) => T[],
): Promise<T[]> {
  const items: T[] = [];
  for (let page = 1; ; page++) {
    const body = await fetchPage(page, 100);
    const batch = pick(body);
    items.push(...batch);
    if (batch.length === 0 || items.length >= Number(body.TotalCount ?? 0)) return items;
  }
}

/** `a.b.c` of a response body, as a list (missing wrappers read as empty). */
export function listAt<T = Record<string, unknown>>(body: Record<string, unknown>, ...path: string[]): T[] {
  let value: unknown = body;
  for (const key of path) value = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
  return Array.isArray(value) ? (value as T[]) : [];
}

/** Parses repeated `key=value` arguments (the value may contain `=`). */
export function keyValuePairs(items: readonly string[]): Array<{ TagKey: string; TagValue: string }> {
  return items.map((item) => {
    const at = item.indexOf('=');
    if (at <= 0) throw new Error(`"${item}" is not key=value`);
    return { TagKey: item.slice(0, at), TagValue: item.slice(at + 1) };
  });
}
