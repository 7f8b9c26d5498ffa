import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { type RunningServer, startHttpServer } from '../../src/api/app.js';
import type { Clock } from '../../src/clock.js';
import { type KmsConfig, loadConfig } from '../../src/config.js';
import { type Kms, createKms } from '../../src/kms.js';
import { createAccessKey } from '../../src/services/access.js';
import { systemCaller } from '../../src/services/context.js';
import { createInstance } from '../../src/services/instances.js';
import { createTestDatabase } from './database.js';
import { type TestToken, testToken } from './token.js';

export interface Credentials {
  accessKeyId: string;
  accessKeySecret: string;
}

export interface TestServer {
  kms: Kms;
  config: KmsConfig;
  token: TestToken;
  databaseUrl: string;
  endpoint: string;
  port: number;
  admin: Credentials;
  hsmInstanceId: string;
  softwareInstanceId: string;
  /** Every log line the server wrote, as raw JSON text. */
  logs: string[];
  stop(): Promise<void>;
}

export interface TestServerOptions {
  clock?: Clock;
  /** Reuse a database (e.g. to restart a server on the same state). */
  databaseUrl?: string;
  env?: Record<string, string>;
  hsmKeyQuota?: number;
}

/** Builds a running server in one call: own database, the process's token, an admin key and two instances. */
export async function startServer(options: TestServerOptions = {}): Promise<TestServer> {
  const token = await testToken();
  const databaseUrl = options.databaseUrl ?? (await createTestDatabase());
  const config = loadConfig({
    KMS_DATA_DIR: token.dataDir,
    KMS_PORT: '0',
    DATABASE_URL: databaseUrl,
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    KMS_HSM_TOKEN_LABEL: token.label,
    KMS_LOG_LEVEL: 'info',
    // BullMQ queues of this server only: parallel test files share one Redis.
    KMS_QUEUE_PREFIX: `test-${randomUUID()}`,
    ...options.env,
  });
  const logs: string[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logs.push(chunk.toString('utf8'));
        callback();
      },
    }),
  );
  // No clock given: the one KMS_CLOCK chooses (system unless options.env says manual).
  const kms = await createKms(config, { ...(options.clock ? { clock: options.clock } : {}), logger, pin: token.userPin });
  // A node serves before its cache invalidation channel has subscribed if that takes over
  // 1 s (caches then live only KMS_CACHE_FALLBACK_TTL_MS): on a loaded test machine it can,
  // and a test of cross-node invalidation would see a change late. Tests start subscribed.
  await untilSubscribed(kms, 15_000);
  let http: RunningServer;
  try {
    http = await startHttpServer(kms, '127.0.0.1', 0);
  } catch (error) {
    await kms.close();
    throw error;
  }
  const adminKey = await createAccessKey(kms.deps, { role: 'admin' }, systemCaller);
  const hsmInstance = await createInstance(kms.deps, { type: 'HSM', keyQuota: options.hsmKeyQuota ?? 200, qps: 1000 }, systemCaller);
  const softwareInstance = await createInstance(kms.deps, { type: 'SOFTWARE', keyQuota: 200, qps: 1000 }, systemCaller);
  return {
    kms,
    config,
    token,
    databaseUrl,
    endpoint: `127.0.0.1:${http.port}`,
    port: http.port,
    admin: { accessKeyId: adminKey.accessKeyId, accessKeySecret: adminKey.accessKeySecret },
    hsmInstanceId: hsmInstance.id,
    softwareInstanceId: softwareInstance.id,
    logs,
    async stop() {
      await http.close();
      // The queues live under this server's own test prefix: leave nothing in the shared Redis.
      // (SCAN walks the whole keyspace, nonces included: large batches, fewer round trips.)
      await kms.jobs.close();
      for await (const keys of kms.redis.scanStream({ match: `${config.jobs.queuePrefix}:*`, count: 20_000 }) as AsyncIterable<string[]>) {
        if (keys.length > 0) await kms.redis.del(...keys);
      }
      await kms.close();
    },
  };
}

/** Waits (bounded; a test that starts with Redis down goes on without) for the node's invalidation channel. */
async function untilSubscribed(kms: Kms, boundMs: number): Promise<void> {
  const until = Date.now() + boundMs;
  while (!kms.caches.invalidation.subscribed && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
}
