import type { Queue } from 'bullmq';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Hsm } from '../hsm/hsm.js';
import type { InstanceQuota } from '../services/instances.js';

/** Where the scrape-time gauges read shared state; each source is asked once per scrape. */
export interface ScrapeSources {
  /** Every instance with versions used and QPS over the last second (one SQL query, one Redis round trip). */
  quotaOverview(): Promise<InstanceQuota[]>;
  /** Versions at or past 2^31 AES-GCM encryptions (an index lookup). */
  versionsPastEncryptionWarning(): Promise<number>;
  /** The BullMQ queues by name. */
  queues: Readonly<Record<string, Queue>>;
  hsm: Pick<Hsm, 'sessionStats' | 'randomBytes'>;
  /** The metadata caches' counters by cache name, when this process has caches. */
  cacheStats?: () => Readonly<Record<string, { hits: number; misses: number; entries: number }>>;
}

/** How long the scrape's HSM probe may take before the HSM counts as down. */
const HSM_PROBE_TIMEOUT_MS = 2_000;
export const JOB_STATES = ['waiting', 'active', 'delayed', 'failed', 'prioritized', 'waiting-children'] as const;

/**
 * Gauges computed when Prometheus scrapes, from Postgres, Redis, BullMQ and the HSM: cheap
 * (one grouped query, one index lookup, a few Redis commands per queue, one 16-byte random
 * draw), and a source that fails leaves its series out of that scrape instead of failing it.
 */
export function registerScrapeGauges(registry: Registry, sources: ScrapeSources): void {
  const registers = [registry];
  const quotaGauges = {
    total: new Gauge({ name: 'kms_instance_key_quota_total', help: 'Key versions an instance may hold (its key quota).', labelNames: ['kms_instance', 'type'] as const, registers }),
    used: new Gauge({ name: 'kms_instance_key_quota_used', help: 'Key versions an instance holds (each consumes one unit).', labelNames: ['kms_instance', 'type'] as const, registers }),
    qpsSpec: new Gauge({ name: 'kms_instance_qps_spec', help: 'An instance\'s QPS spec: crypto calls per second it admits.', labelNames: ['kms_instance', 'type'] as const, registers }),
    qpsUsed: new Gauge({ name: 'kms_instance_qps_used', help: 'Crypto calls an instance admitted over the last second (all processes).', labelNames: ['kms_instance', 'type'] as const, registers }),
  };
  // One query serves the four quota gauges: the first one collected fills them all.
  let quotaScrape: Promise<void> | undefined;
  const collectQuotas = () => {
    quotaScrape ??= (async () => {
      for (const gauge of Object.values(quotaGauges)) gauge.reset();
      const rows = await sources.quotaOverview().catch(() => []);
      for (const { instance, versionsUsed, qpsUsed } of rows) {
        // `kms_instance`, not `instance`: Prometheus gives `instance` to the scraped target.
        const labels = { kms_instance: instance.id, type: instance.type };
        quotaGauges.total.set(labels, instance.keyQuota);
        quotaGauges.used.set(labels, versionsUsed);
        quotaGauges.qpsSpec.set(labels, instance.qps);
        quotaGauges.qpsUsed.set(labels, qpsUsed);
      }
    })().finally(() => {
      // The registry collects every metric at once (Promise.all): the four gauges of this
      // scrape already hold this promise; the next scrape queries again.
      quotaScrape = undefined;
    });
    return quotaScrape;
  };
  for (const gauge of Object.values(quotaGauges)) {
    (gauge as unknown as { collect: () => Promise<void> }).collect = collectQuotas;
  }

  new Gauge({
    name: 'kms_key_versions_past_encryption_warning',
    help: 'Key versions past 2^31 AES-GCM encryptions (half the 2^32 random-IV bound of NIST SP 800-38D): rotate their keys.',
    registers,
    async collect() {
      this.reset();
      const n = await sources.versionsPastEncryptionWarning().catch(() => undefined);
      if (n !== undefined) this.set(n);
    },
  });

  const jobs = new Gauge({ name: 'kms_jobs', help: 'Jobs per queue and state (BullMQ).', labelNames: ['queue', 'state'] as const, registers });
  const lag = new Gauge({
    name: 'kms_job_lag_seconds',
    help: 'How long the oldest due job of a queue has been waiting for a worker (0 when none is due).',
    labelNames: ['queue'] as const,
    registers,
  });
  let jobScrape: Promise<void> | undefined;
  const collectJobs = () => {
    jobScrape ??= (async () => {
      jobs.reset();
      lag.reset();
      await Promise.all(
        Object.entries(sources.queues).map(async ([name, queue]) => {
          try {
            const counts = await queue.getJobCounts(...JOB_STATES);
            for (const state of JOB_STATES) jobs.set({ queue: name, state }, counts[state] ?? 0);
            lag.set({ queue: name }, await oldestDueLagSeconds(queue));
          } catch {
            // Redis away: this queue is left out of the scrape.
          }
        }),
      );
    })().finally(() => {
      jobScrape = undefined;
    });
    return jobScrape;
  };
  (jobs as unknown as { collect: () => Promise<void> }).collect = collectJobs;
  (lag as unknown as { collect: () => Promise<void> }).collect = collectJobs;

  new Gauge({
    name: 'kms_hsm_sessions',
    help: 'HSM session pool of this process: size (KMS_HSM_SESSIONS), open, in_use, and calls waiting for a session.',
    labelNames: ['state'] as const,
    registers,
    collect() {
      const stats = sources.hsm.sessionStats();
      this.set({ state: 'size' }, stats.size);
      this.set({ state: 'open' }, stats.open);
      this.set({ state: 'in_use' }, stats.inUse);
      this.set({ state: 'waiting' }, stats.waiting);
    },
  });
  new Gauge({
    name: 'kms_hsm_up',
    help: 'Whether the HSM answered the scrape\'s probe (16 random bytes from the token) within 2 s.',
    registers,
    async collect() {
      this.set((await probeHsm(sources.hsm)) ? 1 : 0);
    },
  });

  const cacheStats = sources.cacheStats;
  if (cacheStats) {
    const labelNames = ['cache'] as const;
    const counter = (name: string, help: string, field: 'hits' | 'misses') =>
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          // The caches keep their own totals: report them as they are.
          this.reset();
          for (const [cache, stats] of Object.entries(cacheStats())) this.inc({ cache }, stats[field]);
        },
      });
    counter('kms_cache_hits_total', 'Metadata cache hits of this process, by cache.', 'hits');
    counter('kms_cache_misses_total', 'Metadata cache misses of this process, by cache.', 'misses');
    new Gauge({
      name: 'kms_cache_entries',
      help: 'Entries held by each metadata cache of this process.',
      labelNames,
      registers,
      collect() {
        for (const [cache, stats] of Object.entries(cacheStats())) this.set({ cache }, stats.entries);
      },
    });
  }
}

/** Seconds since the oldest job of the queue became due: the head of `wait`, or a `delayed` job past its time. */
export async function oldestDueLagSeconds(queue: Queue): Promise<number> {
  const now = Date.now();
  const [waiting] = await queue.getJobs(['wait'], 0, 0, true);
  const [delayed] = await queue.getJobs(['delayed'], 0, 0, true);
  const dueTimes: number[] = [];
  if (waiting) dueTimes.push(waiting.timestamp + (waiting.opts.delay ?? 0));
  if (delayed) dueTimes.push(delayed.timestamp + (delayed.opts.delay ?? 0));
  const oldest = Math.min(...dueTimes, now);
  return Math.max(0, (now - oldest) / 1000);
}

export async function probeHsm(hsm: Pick<Hsm, 'randomBytes'>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), HSM_PROBE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([hsm.randomBytes(16).then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
