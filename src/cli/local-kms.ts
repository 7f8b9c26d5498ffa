import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { KmsConfig } from '../config.js';
import type { Kms } from '../kms.js';

// Command modules import this file at the top, so it loads the configuration (zod), pino and the
// service (pg, pkcs11js, ioredis …) only inside the functions: `kms --help` stays fast.

/** Where a running quickstart records the embedded Postgres / private Redis it started. */
export const runtimeFile = (dataDir: string) => path.join(dataDir, 'runtime.json');

/**
 * The pool size against the embedded store. It has one backend and its front admits one
 * transaction at a time whatever the pool (store/embedded/round-gate.ts), so more connections
 * add no throughput; but with one, a burst queues in pg's pool, whose 5 s connection wait then
 * answers 503, while with a few it queues at the front's gate, which serves it in order.
 */
export const EMBEDDED_DB_POOL_SIZE = 4;

/**
 * What a running quickstart records in `runtime.json` (0600). The URLs carry the
 * local-services secret: print them nowhere.
 */
export interface LocalRuntime {
  databaseUrl: string;
  redisUrl: string;
  databasePoolSize: number;
  /** KMS_CLOCK of the quickstart: verbs attached to a manual rig use its shared clock too. */
  clock?: KmsConfig['clock'];
  /** Its KMS_QUEUE_PREFIX, under which its queues and shared clock live in its Redis. */
  queuePrefix?: string;
}

/**
 * The configuration for local admin commands: the environment, plus the URLs of a running
 * quickstart's embedded Postgres and private Redis when DATABASE_URL / REDIS_URL are unset
 * (and then the quickstart's pool size, 1 for its embedded store; its queue prefix with its
 * Redis; and its clock mode unless KMS_CLOCK is set — a verb attached to a KMS_CLOCK=manual rig
 * must date what it writes with the rig's service time, not the wall clock).
 */
export async function localConfig(): Promise<KmsConfig> {
  const { loadConfig } = await import('../config.js');
  const config = loadConfig();
  if (config.databaseUrl && config.redisUrl) return config;
  let runtime: Partial<LocalRuntime>;
  try {
    runtime = JSON.parse(await readFile(runtimeFile(config.dataDir), 'utf8')) as Partial<LocalRuntime>;
  } catch {
    return config;
  }
  const attachesDatabase = !config.databaseUrl && typeof runtime.databaseUrl === 'string';
  const attachesRedis = !config.redisUrl && typeof runtime.redisUrl === 'string';
  const adoptsQueuePrefix = attachesRedis && !process.env.KMS_QUEUE_PREFIX && typeof runtime.queuePrefix === 'string';
  const adoptsManualClock = !process.env.KMS_CLOCK && runtime.clock === 'manual';
  return {
    ...config,
    ...(adoptsManualClock ? { clock: 'manual' as const } : {}),
    ...(adoptsQueuePrefix ? { jobs: { ...config.jobs, queuePrefix: runtime.queuePrefix as string } } : {}),
    databaseUrl: config.databaseUrl ?? runtime.databaseUrl,
    redisUrl: config.redisUrl ?? runtime.redisUrl,
    databasePoolSize: attachesDatabase && typeof runtime.databasePoolSize === 'number' ? runtime.databasePoolSize : config.databasePoolSize,
  };
}

/** Runs an admin command against the local store and HSM, closing everything afterwards. */
export async function withLocalKms<T>(fn: (kms: Kms) => Promise<T>): Promise<T> {
  const config = await localConfig();
  if (!config.databaseUrl) {
    throw new Error('DATABASE_URL is not set and no quickstart is running (start one with `npm run quickstart`).');
  }
  const [{ destination, pino }, { createKms }] = await Promise.all([import('pino'), import('../kms.js')]);
  // Logs go to stderr: stdout is the verb's JSON (`kms instance list | jq`), and a rig's
  // manual clock warns at every start.
  const logger = pino({ level: 'warn', base: { service: 'hsm-kms' } }, destination(2));
  const kms = await createKms({ ...config, logLevel: 'warn' }, { logger });
  try {
    return await fn(kms);
  } finally {
    await kms.close();
  }
}
