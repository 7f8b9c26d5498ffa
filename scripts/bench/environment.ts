import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { Cleanup } from './cleanup.js';

const run = promisify(execFile);

/** Where the bench's own copy of everything lives; all of it goes away at the end. */
export interface BenchEnvironment {
  readonly repoRoot: string;
  readonly root: string;
  readonly dataDir: string;
  readonly databaseName: string;
  readonly databaseUrl: string;
  readonly redisUrl: string;
  readonly queuePrefix: string;
  /** The environment `kms` runs with (no inherited SOFTHSM2_CONF, KMS_* or DATABASE_URL). */
  readonly kmsEnv: NodeJS.ProcessEnv;
  /** A pg client on the bench database (seeding, counting). */
  readonly db: pg.Client;
  readonly redis: Redis;
}

const withDatabase = (url: string, name: string) => {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
};

/**
 * A temp dir (the data dir with its SoftHSM2 token), a database `bench_<pid>` on the Postgres
 * of DATABASE_URL (default: the local server), a Redis key prefix of its own; each registered
 * for removal at once.
 */
export async function prepareEnvironment(cleanup: Cleanup, repoRoot: string): Promise<BenchEnvironment> {
  const root = await mkdtemp(path.join(tmpdir(), 'kms-bench-'));
  cleanup.add('remove the temp dir', () => rm(root, { recursive: true, force: true }));
  const dataDir = path.join(root, 'data');

  const adminUrl = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const databaseName = `bench_${process.pid}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${databaseName}`);
  cleanup.add(`drop database ${databaseName}`, async () => {
    try {
      await admin.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
    } finally {
      await admin.end();
    }
  });
  const databaseUrl = withDatabase(adminUrl, databaseName);
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  cleanup.add('close the bench database client', () => db.end());

  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const queuePrefix = `bench-${process.pid}-${randomBytes(3).toString('hex')}`;
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
  await redis.connect();
  cleanup.add('close redis', () => void redis.disconnect());
  cleanup.add(`delete redis keys ${queuePrefix}:*`, async () => void (await deleteRedisKeys(redis, `${queuePrefix}:*`)));

  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('KMS_') && name !== 'SOFTHSM2_CONF' && name !== 'DATABASE_URL' && name !== 'REDIS_URL'),
  );
  const kmsEnv: NodeJS.ProcessEnv = {
    ...inherited,
    NODE_ENV: 'production',
    KMS_DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    KMS_QUEUE_PREFIX: queuePrefix,
    KMS_HOST: '127.0.0.1',
    KMS_PORT: '0',
  };
  return { repoRoot, root, dataDir, databaseName, databaseUrl, redisUrl, queuePrefix, kmsEnv, db, redis };
}

/** SCAN + UNLINK of every key matching `pattern` (nonces of the bench's access key, its queues). */
export async function deleteRedisKeys(redis: Redis, pattern: string): Promise<number> {
  let deleted = 0;
  for await (const keys of redis.scanStream({ match: pattern, count: 5_000 }) as AsyncIterable<string[]>) {
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  }
  return deleted;
}

/** Runs one `kms` verb as a user would (`node bin/kms.mjs …`) and parses its JSON output. */
export async function kmsCli(env: BenchEnvironment, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ json: unknown; ms: number }> {
  const started = performance.now();
  try {
    const { stdout } = await run(process.execPath, [path.join(env.repoRoot, 'bin/kms.mjs'), ...args], {
      cwd: env.root,
      env: { ...env.kmsEnv, ...extraEnv },
      maxBuffer: 16 * 1024 * 1024,
    });
    const ms = performance.now() - started;
    const text = stdout.trim();
    return { json: text.startsWith('{') || text.startsWith('[') ? (JSON.parse(text) as unknown) : text, ms };
  } catch (error) {
    // stderr of a failed verb: its refusal, never a secret (the CLI prints none there).
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`kms ${args.slice(0, 3).join(' ')} failed: ${stderr.trim().split('\n').slice(-5).join('\n')}`);
  }
}
