import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PRIVATE_REDIS_PORT, redisCommand, startPrivateRedis, type PrivateRedis } from '../../src/cli/local-redis.js';
import { redisServersIn } from '../helpers/processes.js';

describe('private redis-server for the quickstart', () => {
  const password = 'test-secret-0123456789abcdef';
  let dataDir: string;
  let running: PrivateRedis | undefined;

  beforeAll(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kms-private-redis-'));
  });

  afterEach(async () => {
    // A test that failed half-way leaves its server running: stop it before the next one starts.
    await running?.stop();
    running = undefined;
  });

  afterAll(async () => {
    await running?.stop();
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('starts on 127.0.0.1, answers PING, keeps data across a restart, and stops', async () => {
    running = await startPrivateRedis({ dataDir, password });
    const url = new URL(running.url);
    expect(url.protocol).toBe('redis:');
    expect(url.hostname).toBe('127.0.0.1');
    const port = Number(url.port);
    expect(port).toBeGreaterThanOrEqual(DEFAULT_PRIVATE_REDIS_PORT);
    expect(await redisCommand(port, 'PING', { password })).toBe('+PONG');

    const client = new Redis(running.url, { maxRetriesPerRequest: 1 });
    try {
      await client.set('kms:test', 'persisted');
    } finally {
      client.disconnect();
    }
    await running.stop();
    running = undefined;
    await expect(redisCommand(port, 'PING', { password })).rejects.toThrow();

    // The append-only file lives under the data dir and brings the key back.
    const entries = await fs.readdir(path.join(dataDir, 'redis'));
    expect(entries.length).toBeGreaterThan(0);
    running = await startPrivateRedis({ dataDir, password });
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
    await expect(startPrivateRedis({ dataDir, password, command: 'redis-server-that-does-not-exist' })).rejects.toThrow(
      /not found on PATH.*REDIS_URL/s,
    );
  });

  it('requires the password: a client without it or with a wrong one is refused; it is not on the command line', async () => {
    running = await startPrivateRedis({ dataDir, password });
    const port = running.port;
    await expect(redisCommand(port, 'GET kms:test')).rejects.toThrow(/NOAUTH/);
    await expect(redisCommand(port, 'GET kms:test', { password: 'wrong-password' })).rejects.toThrow(/refused the password/);
    // The nonce attack of issue 13: deleting a key without the password, or with a wrong one.
    expect(await ioredisRefusal({ port })).toMatch(/NOAUTH/);
    expect(await ioredisRefusal({ port, password: 'wrong-password' })).toMatch(/WRONGPASS|invalid password/i);
    const authorised = new Redis(running.url, { maxRetriesPerRequest: 1 });
    try {
      expect(await authorised.set('kms:test', 'with-auth')).toBe('OK');
    } finally {
      authorised.disconnect();
    }

    const pid = Number((await fs.readFile(path.join(dataDir, 'redis', 'redis.pid'), 'utf8')).trim());
    const cmdline = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).replaceAll('\0', ' ');
    expect(cmdline).not.toContain(password);
    // The password lives in the 0600 config file redis-server was given.
    const conf = path.join(dataDir, 'redis', 'redis.conf');
    expect((await fs.stat(conf)).mode & 0o777).toBe(0o600);
    expect(await fs.readFile(conf, 'utf8')).toContain(`requirepass "${password}"`);
    await running.stop();
    running = undefined;
  });

  it('stops the redis-server a SIGKILLed quickstart left behind, so only one runs over the data dir', async () => {
    const orphanDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kms-orphan-redis-'));
    try {
      // The "quickstart": a process that starts the private Redis, then dies without cleaning up.
      const fixture = path.resolve(import.meta.dirname, '../fixtures/start-private-redis.ts');
      const parent = spawn(process.execPath, ['--import', 'tsx', fixture, orphanDir], {
        env: { ...process.env, KMS_TEST_REDIS_PASSWORD: password },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const firstPort = await new Promise<number>((resolve, reject) => {
        let out = '';
        parent.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const match = /ready (\d+)/.exec(out);
          if (match) resolve(Number(match[1]));
        });
        parent.once('exit', (code) => reject(new Error(`the fixture exited (${code}) before Redis was ready`)));
      });
      const orphanPid = Number((await fs.readFile(path.join(orphanDir, 'redis', 'redis.pid'), 'utf8')).trim());
      const parentGone = new Promise((resolve) => parent.once('exit', resolve));
      parent.kill('SIGKILL');
      await parentGone;
      // The orphan still serves the data dir.
      expect(await redisCommand(firstPort, 'PING', { password })).toBe('+PONG');
      expect(await redisServersIn(path.join(orphanDir, 'redis'))).toEqual([orphanPid]);

      running = await startPrivateRedis({ dataDir: orphanDir, password });
      const servers = await redisServersIn(path.join(orphanDir, 'redis'));
      expect(servers).toHaveLength(1);
      expect(servers[0]).not.toBe(orphanPid);
      // The orphan was stopped, so its port was free again for the new server.
      expect(running.port).toBe(firstPort);
      await running.stop();
      running = undefined;
      expect(await redisServersIn(path.join(orphanDir, 'redis'))).toEqual([]);
    } finally {
      await fs.rm(orphanDir, { recursive: true, force: true });
    }
  });
});


/** What a Redis refuses a client with `options` (its first error), or '' if `DEL` went through. */
async function ioredisRefusal(options: { port: number; password?: string }): Promise<string> {
  const client = new Redis({ host: '127.0.0.1', ...options, maxRetriesPerRequest: 0, lazyConnect: true, retryStrategy: () => null });
  let refusal = '';
  client.on('error', (error: Error) => (refusal ||= error.message));
  try {
    await client.connect();
    await client.del('kms:nonce:x');
  } catch (error) {
    refusal ||= (error as Error).message;
  } finally {
    client.disconnect();
  }
  return refusal;
}
