import { rm } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PrivateRedis, startPrivateRedis } from '../../src/cli/local-redis.js';
import { AUDIT_DIGEST_QUEUE, AUDIT_DIGEST_SCHEDULER_ID } from '../../src/jobs/audit-digest.js';
import { SWEEPER_QUEUE, SWEEPER_SCHEDULER_ID } from '../../src/jobs/sweeper.js';
import { waitFor } from '../helpers/jobs.js';
import { encodeQuery, send, v1Params } from '../helpers/raw-rpc.js';
import { startWorkerProcess } from '../helpers/serve-process.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 19 items 4 and 5, on a private redis-server of this file: Redis restarted empty (its
 * AOF directory removed between stop and start) must not reopen a replay hole nor lose the
 * repeatable jobs for good; `kms worker` started while Redis is down starts once it returns.
 */
let dataDir: string;
let port: number;
let redis: PrivateRedis | undefined;
let server: TestServer;
const password = 'redis-restart-test-secret';

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port: free } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return free;
}

/** Stops the private Redis and starts it again with nothing: no AOF, no RDB. */
async function restartEmpty(): Promise<void> {
  await redis?.stop();
  redis = undefined;
  await rm(path.join(dataDir, 'redis'), { recursive: true, force: true });
  redis = await startPrivateRedis({ dataDir, password, port });
}

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kms-redis-restart-'));
  port = await freePort();
  redis = await startPrivateRedis({ dataDir, password, port });
  server = await startServer({ env: { REDIS_URL: redis.url } });
}, 60_000);

afterAll(async () => {
  if (redis === undefined && dataDir) redis = await startPrivateRedis({ dataDir, password, port }).catch(() => undefined);
  await server?.stop();
  await redis?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
}, 60_000);

describe('Redis restarted empty', () => {
  it('a signed request captured before the restart is refused when replayed after it; a freshly signed one is served', async () => {
    // This Redis started moments ago: a request signed in its first second (or two: Redis tells
    // its uptime in whole seconds) is refused as possibly older than the replay cache. Sign until
    // one is served, as a client does after IllegalTimestamp.
    let captured = '';
    await waitFor('a request signed after the replay cache began to be served', async () => {
      captured = `/?${encodeQuery(v1Params('ListKeys', {}, server.admin))}`;
      return (await send(server.endpoint, { path: captured })).status === 200;
    }, 10_000, 200);
    // Before the restart the nonce is remembered.
    const replayed = await send(server.endpoint, { path: captured });
    expect([replayed.status, replayed.body.Code]).toEqual([400, 'SignatureNonceUsed']);

    // Restart in a later second than the capture's: a request of the epoch's own second is served
    // (services/nonces.ts), so a replay in the very second of the restart is the documented gap.
    await new Promise((resolve) => setTimeout(resolve, 1_010 - (Date.now() % 1_000)));
    await restartEmpty();
    // The service reconnects within a fraction of a second; until then the replay is a 503.
    const answers: Array<[number, unknown]> = [];
    await waitFor('the service to reach the restarted Redis', async () => {
      const answer = await send(server.endpoint, { path: captured });
      answers.push([answer.status, answer.body.Code]);
      return answer.status !== 503;
    }, 20_000, 50);
    expect(answers.at(-1)).toEqual([400, 'IllegalTimestamp']);
    expect(answers.filter(([status]) => status !== 503)).toEqual([[400, 'IllegalTimestamp']]);
    // A request signed now is served (Timestamps have whole seconds: sign in the next one).
    await waitFor('a fresh request to be served', async () => (await send(server.endpoint, { path: `/?${encodeQuery(v1Params('ListKeys', {}, server.admin))}` })).status === 200, 5_000, 100);
  }, 60_000);

  it('a running worker re-creates the sweeper and audit-digest schedules', async () => {
    const worker = await startWorkerProcess(server);
    const connection = { url: redis!.url };
    const prefix = server.config.jobs.queuePrefix;
    try {
      const scheduled = async () => {
        const sweeper = new Queue(SWEEPER_QUEUE, { connection, prefix });
        const digests = new Queue(AUDIT_DIGEST_QUEUE, { connection, prefix });
        try {
          return Boolean(await sweeper.getJobScheduler(SWEEPER_SCHEDULER_ID)) && Boolean(await digests.getJobScheduler(AUDIT_DIGEST_SCHEDULER_ID));
        } finally {
          await Promise.all([sweeper.close(), digests.close()]);
        }
      };
      expect(await scheduled()).toBe(true);
      const sentinel = async (write: boolean) => {
        const client = new Redis(redis!.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
        try {
          await client.connect();
          if (write) await client.set('kms-test:restart-sentinel', '1');
          return (await client.get('kms-test:restart-sentinel')) === '1';
        } finally {
          client.disconnect();
        }
      };
      expect(await sentinel(true)).toBe(true);
      await restartEmpty();
      Object.assign(connection, { url: redis!.url });
      const restartedAt = Date.now();
      // Redis came back empty (the schedules themselves may already be back: on an idle machine
      // the worker re-creates them within milliseconds of reconnecting).
      expect(await sentinel(false)).toBe(false);
      await waitFor('the worker to re-create both schedules', () => scheduled().catch(() => false), 30_000, 200);
      console.log(`[redis restart] schedules back ${Date.now() - restartedAt} ms after Redis restarted empty (sweep interval 1 s)`);
      expect(worker.child.exitCode).toBeNull();
      expect(worker.output()).toContain('re-created');
    } finally {
      await worker.stop();
    }
  }, 90_000);
});

describe('kms worker started while Redis is down', () => {
  it('stays up, and starts (saying so) once Redis returns', async () => {
    await redis?.stop();
    redis = undefined;
    let worker: Awaited<ReturnType<typeof startWorkerProcess>> | undefined;
    const starting = startWorkerProcess(server).then((w) => (worker = w));
    try {
      // Give it time to be well into its start-up against the missing Redis, then bring Redis back.
      const downSince = Date.now();
      // 12 s: past the point where BullMQ's own reconnect back-off reaches 20 s between tries.
      await waitFor('the worker to be some time without Redis', () => Date.now() - downSince > 12_000, 20_000, 100);
      expect(worker).toBeUndefined();
      redis = await startPrivateRedis({ dataDir, password, port });
      const returnedAt = Date.now();
      await starting;
      const startedAfterMs = Date.now() - returnedAt;
      console.log(`[redis restart] kms worker started ${startedAfterMs} ms after Redis returned`);
      expect(worker!.output()).toContain('job workers started');
      expect(worker!.child.exitCode).toBeNull();
      // A bound on waiting, not a speed target: a worker must not sit out a long back-off.
      expect(startedAfterMs).toBeLessThan(5_000);
    } finally {
      await starting.catch(() => undefined);
      await worker?.stop();
    }
  }, 90_000);
});
