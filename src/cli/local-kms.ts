import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { type KmsConfig, loadConfig } from '../config.js';
import { type Kms, createKms } from '../kms.js';

/** Where a running quickstart records the embedded Postgres / private Redis it started. */
export const runtimeFile = (dataDir: string) => path.join(dataDir, 'runtime.json');

/**
 * The configuration for local admin commands: the environment, plus the URLs of a running
 * quickstart's embedded Postgres and private Redis when DATABASE_URL / REDIS_URL are unset.
 */
export async function localConfig(): Promise<KmsConfig> {
  const config = loadConfig();
  if (config.databaseUrl && config.redisUrl) return config;
  try {
    const runtime = JSON.parse(await readFile(runtimeFile(config.dataDir), 'utf8')) as { databaseUrl?: string; redisUrl?: string };
    return {
      ...config,
      databaseUrl: config.databaseUrl ?? runtime.databaseUrl,
      redisUrl: config.redisUrl ?? runtime.redisUrl,
    };
  } catch {
    return config;
  }
}

/** Runs an admin command against the local store and HSM, closing everything afterwards. */
export async function withLocalKms<T>(fn: (kms: Kms) => Promise<T>): Promise<T> {
  const config = await localConfig();
  if (!config.databaseUrl) {
    throw new Error('DATABASE_URL is not set and no quickstart is running (start one with `npm run quickstart`).');
  }
  const kms = await createKms({ ...config, logLevel: 'warn' });
  try {
    return await fn(kms);
  } finally {
    await kms.close();
  }
}
