import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PrivateRedis, startPrivateRedis } from '../../src/cli/local-redis.js';
import { redisServersIn } from '../helpers/processes.js';
import { openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 19 item 3: while Redis is down a signed call answers 503 ServiceUnavailableTemporary
 * within the Redis command timeout (KMS_REDIS_COMMAND_TIMEOUT_MS) instead of waiting out
 * ioredis's offline queue and back-off (10–15 s before), /health answers at once, and calls
 * are served again once Redis is back. The server runs on a private redis-server of its own,
 * stopped and restarted on the same port.
 */
const COMMAND_TIMEOUT_MS = 1_000;
/** Generous bounds: what is checked is "bounded, not hung", not a speed. */
const ANSWER_BOUND_MS = 5_000;

let dataDir: string;
let port: number;
const password = randomBytes(12).toString('hex');
let redis: PrivateRedis | undefined;
let server: TestServer;

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port: free } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return free;
}

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kms-redis-outage-'));
  port = await freePort();
  redis = await startPrivateRedis({ dataDir, password, port });
  server = await startServer({ env: { REDIS_URL: redis.url, KMS_REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS) } });
});

afterAll(async () => {
  if (redis === undefined && dataDir) redis = await startPrivateRedis({ dataDir, password, port }).catch(() => undefined);
  await server?.stop();
  await redis?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await fn();
  return { value, ms: Date.now() - started };
}

async function health(): Promise<{ status: number; redis: string }> {
  const response = await fetch(`http://${server.endpoint}/health`);
  return { status: response.status, redis: ((await response.json()) as { redis: string }).redis };
}

/** Polls until `call` succeeds (Redis is back), at most 20 s. */
async function servedAgain(call: () => Promise<unknown>): Promise<boolean> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (await call().then(() => true, () => false)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe('Redis down', () => {
  it('a Redis that hangs (SIGSTOP): a signed call is 503 within the command timeout instead of waiting for ever; served again after SIGCONT', async () => {
    const call = openApiClient(server.endpoint, server.admin);
    const [pid] = await redisServersIn(path.join(dataDir, 'redis'));
    expect(pid).toBeDefined();
    process.kill(pid!, 'SIGSTOP');
    try {
      const refused = await timed(() => sdkError(() => call('ListKeys', {})));
      expect([refused.value.code, refused.value.statusCode]).toEqual(['ServiceUnavailableTemporary', 503]);
      expect(refused.ms).toBeLessThan(ANSWER_BOUND_MS);
      const report = await timed(health);
      expect([report.value.status, report.value.redis]).toEqual([503, 'unreachable']);
      expect(report.ms).toBeLessThan(ANSWER_BOUND_MS);
    } finally {
      process.kill(pid!, 'SIGCONT');
    }
    expect(await servedAgain(() => call('ListKeys', {}))).toBe(true);
  });

  it('a stopped Redis: a signed call is 503 within the command timeout, /health says so at once, and calls are served again once Redis is back', async () => {
    const call = openApiClient(server.endpoint, server.admin);
    const { KeyMetadata } = await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId });
    const keyId = KeyMetadata.KeyId as string;
    expect((await call('Encrypt', { KeyId: keyId, Plaintext: 'before' })).CiphertextBlob).toBeTruthy();

    await redis!.stop();
    redis = undefined;

    for (const action of ['Encrypt', 'ListKeys'] as const) {
      const refused = await timed(() => sdkError(() => call(action, action === 'Encrypt' ? { KeyId: keyId, Plaintext: 'during' } : {})));
      expect([refused.value.code, refused.value.statusCode]).toEqual(['ServiceUnavailableTemporary', 503]);
      expect(refused.ms).toBeLessThan(ANSWER_BOUND_MS);
    }
    const report = await timed(health);
    expect([report.value.status, report.value.redis]).toEqual([503, 'unreachable']);
    expect(report.ms).toBeLessThan(ANSWER_BOUND_MS);
    expect(server.logs.join('\n')).not.toContain('rpc internal failure');

    redis = await startPrivateRedis({ dataDir, password, port });
    expect(await servedAgain(() => call('Encrypt', { KeyId: keyId, Plaintext: 'after' }))).toBe(true);
  });
});
