import { existsSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { type Logger, pino } from 'pino';
import { type Clock, systemClock } from './clock.js';
import type { KmsConfig } from './config.js';
import type { Hsm } from './hsm/hsm.js';
import { Pkcs11Hsm } from './hsm/pkcs11/pkcs11-hsm.js';
import { loadOrCreatePins } from './hsm/provision.js';
import { SoftwareCipher } from './hsm/software.js';
import { type KmsJobs, createKmsJobs } from './jobs/queues.js';
import { CredentialDirectory } from './services/access.js';
import type { ServiceDeps } from './services/context.js';
import { NonceRegistry } from './services/nonces.js';
import { SharedOffsetClock } from './shared-offset-clock.js';
import { type Db, createDb } from './store/db.js';
import { migrate } from './store/migrate.js';

/** Everything the transports (api, jobs, cli) need: the use cases' dependencies and shared registries. */
export interface KmsServices {
  deps: ServiceDeps;
  credentials: CredentialDirectory;
  nonces: NonceRegistry;
  redis: Redis;
  /** BullMQ producers and the job-scheduling port of the services (workers: jobs/workers.ts). */
  jobs: KmsJobs;
}

export interface Kms extends KmsServices {
  close(): Promise<void>;
}

export interface CreateKmsOptions {
  clock?: Clock;
  logger?: Logger;
  /** Apply pending migrations at start (the default; `kms migrate` runs them on its own). */
  migrate?: boolean;
  /** The user PIN; by default read from env or the 0600 file under the data dir. */
  pin?: string;
}

/**
 * The one composition root: wires the PKCS#11 adapter, Postgres, Redis and the services.
 * Tests call the same factory with test configuration.
 */
export async function createKms(config: KmsConfig, options: CreateKmsOptions = {}): Promise<Kms> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: { service: 'hsm-kms' } });
  if (!config.databaseUrl) throw new Error('DATABASE_URL is not set (the quickstart starts an embedded Postgres for you).');
  useDataDirSoftHsmConf(config);

  const opened: Array<() => Promise<unknown>> = [];
  const closeAll = async () => {
    for (const close of opened.reverse()) await close().catch(() => undefined);
  };
  try {
    const db: Db = createDb(config.databaseUrl, config.databasePoolSize);
    opened.push(() => db.end());
    if (options.migrate !== false) await migrate(db);

    const pin = options.pin ?? (await loadOrCreatePins(config.dataDir)).userPin;
    const hsm: Hsm = await Pkcs11Hsm.open({
      modulePath: config.hsm.modulePath,
      tokenLabel: config.hsm.tokenLabel,
      pin,
      sessions: config.hsm.sessions,
      importStrict: config.hsm.importStrict,
    });
    opened.push(() => hsm.close());
    logger.info({ hsm: hsm.info() }, 'HSM opened; capabilities probed');

    const redis = new Redis(config.redisUrl ?? 'redis://127.0.0.1:6379', {
      maxRetriesPerRequest: 2,
      enableOfflineQueue: true,
      lazyConnect: false,
    });
    redis.on('error', (error: Error) => logger.warn({ err: error.message }, 'redis connection error'));
    opened.push(() => redis.quit());

    const clock = options.clock ?? (await serviceClock(config, redis, logger, opened));
    const jobs = createKmsJobs(config, clock);
    opened.push(() => jobs.close());

    const software = new SoftwareCipher();
    opened.push(async () => software.clear());
    const deps: ServiceDeps = { db, hsm, software, clock, config, logger, jobs };
    return {
      deps,
      redis,
      jobs,
      credentials: new CredentialDirectory(deps),
      nonces: new NonceRegistry(redis, config.maxSkewSeconds * 2),
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/**
 * KMS_CLOCK: the wall clock, or (test rigs only, never unless set) the wall clock plus the
 * offset `kms clock` moves, shared through Redis by every process on this queue prefix.
 */
async function serviceClock(config: KmsConfig, redis: Redis, logger: Logger, opened: Array<() => Promise<unknown>>): Promise<Clock> {
  if (config.clock !== 'manual') return systemClock;
  const clock = await SharedOffsetClock.start(redis, config.jobs.queuePrefix, logger);
  opened.push(() => clock.close());
  logger.warn({ offsetSeconds: clock.offsetMs / 1000, now: clock.now().toISOString() }, 'KMS_CLOCK=manual: the service clock is moved by `kms clock` (test rigs only)');
  return clock;
}

/**
 * SoftHSM2 reads SOFTHSM2_CONF at C_Initialize; unless the operator set it, use the config
 * `kms hsm init` wrote under the data dir.
 */
export function useDataDirSoftHsmConf(config: KmsConfig): void {
  if (process.env.SOFTHSM2_CONF) return;
  const conf = path.join(config.dataDir, 'hsm', 'softhsm2.conf');
  if (existsSync(conf)) process.env.SOFTHSM2_CONF = conf;
}
