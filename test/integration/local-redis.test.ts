import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PRIVATE_REDIS_PORT, redisCommand, startPrivateRedis, type PrivateRedis } from '../../src/cli/local-redis.js';

describe('private redis-server for the quickstart', () => {
  let dataDir: string;
  let running: PrivateRedis | undefined;

  beforeAll(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kms-private-redis-'));
  });

  afterAll(async () => {
    await running?.stop();
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('starts on 127.0.0.1, answers PING, keeps data across a restart, and stops', async () => {
    running = await startPrivateRedis({ dataDir });
    const url = new URL(running.url);
    expect(url.protocol).toBe('redis:');
    expect(url.hostname).toBe('127.0.0.1');
    const port = Number(url.port);
    expect(port).toBeGreaterThanOrEqual(DEFAULT_PRIVATE_REDIS_PORT);
    expect(await redisCommand(port, 'PING')).toBe('+PONG');

    const client = new Redis(running.url, { maxRetriesPerRequest: 1 });
    try {
      await client.set('kms:test', 'persisted');
    } finally {
      client.disconnect();
    }
    await running.stop();
    running = undefined;
    await expect(redisCommand(port, 'PING')).rejects.toThrow();

    // The append-only file lives under the data dir and brings the key back.
    const entries = await fs.readdir(path.join(dataDir, 'redis'));
    expect(entries.length).toBeGreaterThan(0);
    running = await startPrivateRedis({ dataDir });
    const again = new Redis(running.url, { maxRetriesPerRequest: 1 });
    try {
      expect(await again.get('kms:test')).toBe('persisted');
    } finally {
      again.disconnect();
    }
    await running.stop();
    running = undefined;
  });

  it('tells the user what to do when redis-server is missing', async () => {
    await expect(startPrivateRedis({ dataDir, command: 'redis-server-that-does-not-exist' })).rejects.toThrow(
      /not found on PATH.*REDIS_URL/s,
    );
  });
});
