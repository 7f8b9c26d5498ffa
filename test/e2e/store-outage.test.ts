import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Db, createDb } from '../../src/store/db.js';
import { openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 13: Postgres outages reach the SDK as 503 ServiceUnavailableTemporary (which clients
 * retry), never as 500 InternalFailure. The server's pool is swapped for a broken one.
 */
let server: TestServer;
let healthyDb: Db;

beforeAll(async () => {
  server = await startServer();
  healthyDb = server.kms.deps.db;
});

afterAll(async () => {
  if (server) (server.kms.deps as { db: Db }).db = healthyDb;
  await server?.stop();
});

async function withStore<T>(db: Db, fn: () => Promise<T>): Promise<T> {
  (server.kms.deps as { db: Db }).db = db;
  try {
    return await fn();
  } finally {
    (server.kms.deps as { db: Db }).db = healthyDb;
  }
}

const unavailable = async (action: string, query: Record<string, unknown>) => {
  const e = await sdkError(() => openApiClient(server.endpoint, server.admin)(action, query));
  return [e.code, e.statusCode];
};

describe('a store that cannot be reached', () => {
  it('a pool pointed at a closed port answers 503', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const closed = createDb(`postgres://postgres@127.0.0.1:${port}/none`, 1);
    await withStore(closed, async () => {
      expect(await unavailable('ListKeys', {})).toEqual(['ServiceUnavailableTemporary', 503]);
      expect(await unavailable('CreateKey', {})).toEqual(['ServiceUnavailableTemporary', 503]);
    });
    await closed.end();
  });

  it('a pool whose wait for a connection times out answers 503', async () => {
    const full = createDb(server.databaseUrl, 1, { connectionTimeoutMillis: 100 });
    const held = await full.connect();
    try {
      await withStore(full, async () => {
        expect(await unavailable('ListKeys', {})).toEqual(['ServiceUnavailableTemporary', 503]);
      });
    } finally {
      held.release();
      await full.end();
    }
  });

  it('answers again once the store is back', async () => {
    const created = await openApiClient(server.endpoint, server.admin)('CreateKey', {});
    expect(created.KeyMetadata.KeyState).toBe('Enabled');
  });
});
