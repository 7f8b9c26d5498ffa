import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { EMBEDDED_DB_POOL_SIZE } from '../../src/cli/local-kms.js';
import { KMS, legacyClient } from '../helpers/sdk.js';
import { redisServersIn } from '../helpers/processes.js';

/**
 * `kms quickstart` as a user runs it: a new data dir, no DATABASE_URL (embedded PGlite), no
 * REDIS_URL (private redis-server), serving on an ephemeral port; then Ctrl-C, a second run on
 * the same state, and an old ciphertext still decrypts.
 */
const repoRoot = path.resolve(import.meta.dirname, '../..');
const run = promisify(execFile);
const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});

function quickstartEnv(dataDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, KMS_DATA_DIR: dataDir, KMS_PORT: '0', KMS_LOG_LEVEL: 'warn' };
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'SOFTHSM2_CONF', 'KMS_HSM_PIN', 'KMS_HSM_SO_PIN', 'KMS_DB_POOL_SIZE']) delete env[name];
  return env;
}

function startQuickstart(dataDir: string): Promise<{ child: ChildProcess; endpoint: string; output: () => string }> {
  const env = quickstartEnv(dataDir);
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), 'quickstart'], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`quickstart did not start in time:\n${output}`)), 90_000);
    const check = () => {
      const match = /Endpoint\s+(127\.0\.0\.1:\d+)/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve({ child, endpoint: match[1], output: () => output });
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`quickstart exited (${code}):\n${output}`));
    });
  });
}

function stop(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.kill('SIGINT');
  });
}

describe('npm run quickstart', () => {
  it('serves from an empty data dir, stops on Ctrl-C, and a second run reuses the state', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-quickstart-'));
    const first = await startQuickstart(dataDir);
    const credentialsFile = path.join(dataDir, 'credentials.json');
    expect((await stat(credentialsFile)).mode & 0o777).toBe(0o600);
    const credentials = JSON.parse(await readFile(credentialsFile, 'utf8')) as { AccessKeyId: string; AccessKeySecret: string; Endpoint: string };
    expect(credentials.Endpoint).toBe(first.endpoint);
    expect(first.output()).toContain('HSM instance');

    const client = legacyClient(first.endpoint, { accessKeyId: credentials.AccessKeyId, accessKeySecret: credentials.AccessKeySecret });
    const created = await client.createKey(new KMS.CreateKeyRequest({}));
    const encrypted = await client.encrypt(new KMS.EncryptRequest({ keyId: created.keyMetadata.keyId, plaintext: 'survives restarts' }));
    expect(await stop(first.child)).toBe(0);

    const second = await startQuickstart(dataDir);
    const again = JSON.parse(await readFile(credentialsFile, 'utf8')) as { AccessKeyId: string; AccessKeySecret: string };
    expect(again.AccessKeyId).toBe(credentials.AccessKeyId);
    const client2 = legacyClient(second.endpoint, { accessKeyId: again.AccessKeyId, accessKeySecret: again.AccessKeySecret });
    const decrypted = await client2.decrypt(new KMS.DecryptRequest({ ciphertextBlob: encrypted.ciphertextBlob }));
    expect(decrypted.plaintext).toBe('survives restarts');
    // The same instances are reused, not created again.
    expect(second.output().match(/HSM instance\s+(kst-\w+)/)?.[1]).toBe(first.output().match(/HSM instance\s+(kst-\w+)/)?.[1]);
    expect(await stop(second.child)).toBe(0);
  }, 180_000);

  it('guards its embedded Postgres and private Redis with the local secret, which CLI verbs use and no output shows; a SIGKILL leaves no second Redis', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-quickstart-secret-'));
    const first = await startQuickstart(dataDir);
    const secretFile = path.join(dataDir, 'local-services.secret');
    expect((await stat(secretFile)).mode & 0o777).toBe(0o600);
    const secret = (await readFile(secretFile, 'utf8')).trim();
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    const runtimePath = path.join(dataDir, 'runtime.json');
    expect((await stat(runtimePath)).mode & 0o777).toBe(0o600);
    const runtime = JSON.parse(await readFile(runtimePath, 'utf8')) as { databaseUrl: string; redisUrl: string; databasePoolSize: number };
    expect(decodeURIComponent(new URL(runtime.databaseUrl).password)).toBe(secret);
    expect(decodeURIComponent(new URL(runtime.redisUrl).password)).toBe(secret);
    expect(runtime.databasePoolSize).toBe(EMBEDDED_DB_POOL_SIZE);

    // Without the secret, or with a wrong one: refused by both.
    for (const password of ['', 'wrong-password']) {
      const dbUrl = new URL(runtime.databaseUrl);
      dbUrl.password = password;
      const client = new pg.Client({ connectionString: dbUrl.toString() });
      client.on('error', () => undefined);
      await expect(client.connect()).rejects.toMatchObject({ code: '28P01' });
      await client.end().catch(() => undefined);
      const redisUrl = new URL(runtime.redisUrl);
      const redis = new Redis({ host: redisUrl.hostname, port: Number(redisUrl.port), ...(password ? { password } : {}), lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      let refusal = '';
      redis.on('error', (error: Error) => (refusal ||= error.message));
      await redis.connect().then(() => redis.del('any-nonce')).catch((error: Error) => (refusal ||= error.message));
      redis.disconnect();
      expect(refusal).toMatch(/NOAUTH|WRONGPASS|invalid password/i);
    }
    // With it: both answer.
    const db = new pg.Client({ connectionString: runtime.databaseUrl });
    await db.connect();
    expect((await db.query<{ n: string }>("SELECT count(*) AS n FROM access_keys WHERE role = 'admin'")).rows[0]?.n).toBe('1');
    await db.end();
    const redis = new Redis(runtime.redisUrl, { maxRetriesPerRequest: 1 });
    expect(await redis.ping()).toBe('PONG');
    redis.disconnect();

    // An operator verb attaches through runtime.json, while the quickstart runs.
    const verb = await run(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), 'instance', 'list'], { cwd: repoRoot, env: quickstartEnv(dataDir) });
    expect((JSON.parse(verb.stdout) as unknown[]).length).toBeGreaterThanOrEqual(2);
    expect(verb.stdout + verb.stderr).not.toContain(secret);
    expect(first.output()).not.toContain(secret);

    // SIGKILL: no handler runs, the private Redis is orphaned; the next start stops it.
    const orphanPid = Number((await readFile(path.join(dataDir, 'redis', 'redis.pid'), 'utf8')).trim());
    const killed = new Promise((resolve) => first.child.once('exit', resolve));
    first.child.kill('SIGKILL');
    await killed;
    expect(await redisServersIn(path.join(dataDir, 'redis'))).toEqual([orphanPid]);
    const second = await startQuickstart(dataDir);
    const servers = await redisServersIn(path.join(dataDir, 'redis'));
    expect(servers).toHaveLength(1);
    expect(servers[0]).not.toBe(orphanPid);
    expect(second.output()).not.toContain(secret);
    expect(await stop(second.child)).toBe(0);
    expect(await redisServersIn(path.join(dataDir, 'redis'))).toEqual([]);
  }, 180_000);
});
