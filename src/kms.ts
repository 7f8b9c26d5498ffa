import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { type Logger, pino } from 'pino';
import { type Clock, systemClock } from './clock.js';
import type { KmsConfig } from './config.js';
import { enableFaultPoints, faultPointHsm } from './fault-points.js';
import type { Hsm } from './hsm/hsm.js';
import { Pkcs11Hsm } from './hsm/pkcs11/pkcs11-hsm.js';
import { loadOrCreatePins } from './hsm/provision.js';
import { SoftwareCipher } from './hsm/software.js';
import { type KmsJobs, createKmsJobs } from './jobs/queues.js';
import { CredentialDirectory } from './services/access.js';
import type { ServiceDeps } from './services/context.js';
import { NonceRegistry } from './services/nonces.js';
import { CryptoCallAudit } from './observability/crypto-call-audit.js';
import type { RequestObserver } from './observability/request-outcome.js';
import { type KmsMetrics, createKmsMetrics } from './observability/metrics.js';
import { RequestRateRecorder } from './observability/request-rates.js';
import { registerScrapeGauges } from './observability/scrape-gauges.js';
import { timedHsm } from './observability/timed-hsm.js';
import { systemCaller } from './services/context.js';
import { quotaOverview } from './services/instances.js';
import { RedisRateWindows } from './services/rate-windows.js';
import { AccountRateLimits } from './services/throttling.js';
import { BatchedEncryptionCounter } from './services/version-usage.js';
import { countVersionsPastEncryptionWarning } from './store/version-usage.js';
import { SharedOffsetClock } from './shared-offset-clock.js';
import { type Db, createDb } from './store/db.js';
import { migrate } from './store/migrate.js';
import { createRedisClient } from './store/redis.js';
import { type NodeCaches, startNodeCaches } from './cache/node-caches.js';

/** Everything the transports (api, jobs, cli) need: the use cases' dependencies and shared registries. */
export interface KmsServices {
  deps: ServiceDeps;
  credentials: CredentialDirectory;
  nonces: NonceRegistry;
  redis: Redis;
  /** BullMQ producers and the job-scheduling port of the services (workers: jobs/workers.ts). */
  jobs: KmsJobs;
  /** Told of every answered RPC request (metrics, crypto-call audit, request rates); see observability/request-outcome.ts. */
  requestObservers: RequestObserver[];
  /** This process's Prometheus registry (served at /metrics; README, "Operations"). */
  metrics: KmsMetrics;
  /** Per-account limits by class (KMS_ACCOUNT_RATE_LIMITS), checked by the edge once the action is known. */
  accountRateLimits: AccountRateLimits;
  /** This node's metadata caches (stats per cache), their invalidation channel and `dropEverywhere`. */
  caches: NodeCaches;
  /** The batched crypto-call audit trail (its observer is in requestObservers). */
  cryptoCallAudit: CryptoCallAudit;
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
  // Test setting only (issue 19): refused with NODE_ENV=production, a no-op unless set.
  const faultPoints = enableFaultPoints();
  if (faultPoints.length > 0) logger.warn({ faultPoints }, 'KMS_FAULT_POINTS: this process SIGKILLs itself at these points (tests only)');

  const opened: Array<() => Promise<unknown>> = [];
  const closeAll = async () => {
    for (const close of opened.reverse()) await close().catch(() => undefined);
  };
  try {
    const db: Db = createDb(config.databaseUrl, config.databasePoolSize);
    opened.push(() => db.end());
    if (options.migrate !== false) await migrate(db);

    const pin = options.pin ?? (await loadOrCreatePins(config.dataDir)).userPin;
    const metrics = createKmsMetrics();
    // Every port call timed (kms_hsm_call_duration_seconds); the adapter knows nothing of it.
    const hsm: Hsm = faultPointHsm(timedHsm(await Pkcs11Hsm.open({
      modulePath: config.hsm.modulePath,
      tokenLabel: config.hsm.tokenLabel,
      pin,
      sessions: config.hsm.sessions,
      importStrict: config.hsm.importStrict,
      unwrappedKeyCacheSize: config.hsm.unwrappedKeyCacheSize,
      warn: (message) => logger.warn(message),
    }), metrics.observeHsmCall));
    opened.push(() => hsm.close());
    logger.info({ hsm: hsm.info() }, 'HSM opened; capabilities probed');
    if (!(await hsm.hasMasterWrappingKey())) {
      logger.warn('the HSM has no master wrapping key: HsmEncryptedDatabase keys are refused (503) until `kms hsm init` (with the SO PIN) creates it');
    }
    // The audit digest key is made at first start (a fixed label; non-extractable).
    await hsm.auditDigestPublicKeys();
    // Closed before the store (closeAll runs in reverse): a graceful stop writes what is buffered.
    const cryptoCallAudit = new CryptoCallAudit(db, logger, config.audit);
    opened.push(() => cryptoCallAudit.close());

    const redis = createRedisClient(config.redisUrl ?? 'redis://127.0.0.1:6379', { commandTimeoutMs: config.redisCommandTimeoutMs });
    redis.on('error', (error: Error) => logger.warn({ err: error.message }, 'redis connection error'));
    opened.push(() => redis.quit());

    const clock = options.clock ?? (await serviceClock(config, redis, logger, opened));
    const jobs = createKmsJobs(config, clock);
    opened.push(() => jobs.close());

    const software = new SoftwareCipher();
    opened.push(async () => software.clear());
    const caches = await startNodeCaches({ db, redis, config, logger, software, hsm });
    opened.push(() => caches.close());
    const rates = new RedisRateWindows(redis, config.jobs.queuePrefix);
    // Closed before the store and Redis: a graceful stop writes the counts it holds.
    const encryptions = new BatchedEncryptionCounter(db, logger, config.usageFlushMs);
    opened.push(() => encryptions.close());
    const requestRates = new RequestRateRecorder(redis, config.jobs.queuePrefix, logger);
    opened.push(() => requestRates.close());
    const deps: ServiceDeps = { db, repositories: caches.repositories, hsm, software, clock, config, logger, jobs, rates, encryptions };
    registerScrapeGauges(metrics.registry, {
      quotaOverview: () => quotaOverview(deps, systemCaller),
      versionsPastEncryptionWarning: () => countVersionsPastEncryptionWarning(db),
      queues: Object.fromEntries(Object.values(jobs.queues).map((q) => [q.name, q])),
      hsm,
      cacheStats: () => caches.caches.stats(),
    });
    return {
      deps,
      redis,
      jobs,
      credentials: new CredentialDirectory(deps, caches.caches.credentials),
      nonces: new NonceRegistry(redis, config.maxSkewSeconds * 2, deps.logger),
      requestObservers: [cryptoCallAudit.observe, requestRates.observe],
      metrics,
      accountRateLimits: new AccountRateLimits(rates, config.accountId, config.accountRateLimits),
      cryptoCallAudit,
      caches,
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
