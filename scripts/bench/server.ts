import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { type BenchChild, spawnChild, waitFor } from './children.js';
import type { Cleanup } from './cleanup.js';
import type { BenchEnvironment } from './environment.js';
import { type ClientCredentials, type SigningScheme, signRequest } from './signer.js';

export interface RunningKmsServer {
  readonly child: BenchChild;
  readonly endpoint: string;
  readonly admin: ClientCredentials;
  /** From spawn to the first 200 of /health. */
  readonly startMs: number;
}

/** `node bin/kms.mjs serve`, as a user starts it; logs go to a file in the temp dir. */
export async function startKmsServer(cleanup: Cleanup, env: BenchEnvironment, label: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<RunningKmsServer> {
  const credentialsFile = path.join(env.dataDir, 'credentials.json');
  const started = performance.now();
  const child = spawnChild(cleanup, {
    label,
    command: process.execPath,
    // BENCH_SERVER_NODE_ARGS: node flags for the server, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile a run.
    args: [...(process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean), path.join(env.repoRoot, 'bin/kms.mjs'), 'serve'],
    env: { ...env.kmsEnv, ...serverEnvFromBench(), ...extraEnv },
    cwd: env.root,
    logFile: path.join(env.root, `${label}.log`),
  });
  const ready = await waitFor(child, `${label} answering /health`, 120_000, async () => {
    const credentials = JSON.parse(await readFile(credentialsFile, 'utf8')) as { AccessKeyId: string; AccessKeySecret: string; Endpoint: string };
    const status = await getStatus(credentials.Endpoint, '/health');
    return status === 200 ? credentials : undefined;
  });
  const startMs = performance.now() - started;
  return {
    child,
    endpoint: ready.Endpoint,
    admin: { accessKeyId: ready.AccessKeyId, accessKeySecret: ready.AccessKeySecret },
    startMs,
  };
}

/** BENCH_SERVER_ENV="KMS_PROCESSES=2 KMS_DB_POOL_SIZE=20": settings for `kms serve` only (the RSS rows read the first process). */
function serverEnvFromBench(): Record<string, string> {
  const pairs = (process.env.BENCH_SERVER_ENV ?? '').split(/\s+/).filter(Boolean);
  return Object.fromEntries(
    pairs.map((pair) => {
      const at = pair.indexOf('=');
      if (at <= 0) throw new Error(`BENCH_SERVER_ENV: "${pair}" is not NAME=value`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
  );
}

function getStatus(endpoint: string, urlPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(`http://${endpoint}${urlPath}`, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.setTimeout(2_000, () => req.destroy(new Error('timeout')));
  });
}

/** A refusal of a set-up call: the Alibaba error code and HTTP status (never the request). */
export class RpcRefusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(`${status} ${code}: ${message}`);
  }
}

/** One signed call, for setting the stage (the rows themselves go through autocannon). */
export function callRpc(
  endpoint: string,
  credentials: ClientCredentials,
  action: string,
  params: Readonly<Record<string, string>>,
  scheme: SigningScheme = 'HMAC-SHA1',
): Promise<Record<string, unknown>> {
  const signed = signRequest(scheme, action, params, credentials, endpoint);
  const [host, port] = endpoint.split(':');
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), method: signed.method, path: signed.path, headers: signed.headers, agent: keepAlive }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          // not JSON: reported by status below
        }
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) resolve(body);
        else reject(new RpcRefusal(status, String(body.Code ?? 'unknown'), String(body.Message ?? text.slice(0, 200))));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(signed.body);
  });
}

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 16 });
