import type { HsmSessionStats } from '../hsm/hsm.js';
import type { AuditEntry } from '../store/audit.js';
import {
  type KeyBreakdown,
  type UpcomingByInstance,
  type VersionUsage,
  keyBreakdowns,
  topEncryptingVersions,
  upcomingEvents,
  versionsPastEncryptionWarning,
} from '../store/dashboard.js';
import { listAuditEvents } from './audit-trail.js';
import { type Caller, type ServiceDeps, systemCaller } from './context.js';
import { type InstanceQuota, quotaOverview } from './instances.js';
import { assertAdmin } from './permissions.js';
import { instanceRateHistory } from './throttling.js';

/** How far ahead the dashboard lists rotations, material expiries and deletions. */
export const UPCOMING_DAYS = 30;
/** The chart: the last hour, one point per minute. */
const CHART_SECONDS = 3_600;
const CHART_BUCKET_SECONDS = 60;

/** One point of a rate chart: calls per second, averaged over its minute. */
export interface RatePoint {
  /** Unix seconds of the minute's start. */
  at: number;
  requests: number;
  throttled: number;
}

export interface InstanceOverview extends InstanceQuota {
  keys: KeyBreakdown;
  upcoming: UpcomingByInstance;
  /** Crypto calls admitted and throttled per second over the last hour (per minute). */
  rate: RatePoint[];
}

export interface QueueOverview {
  name: string;
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
  /** Seconds the oldest due job has waited (0: none due); undefined when Redis did not answer. */
  lagSeconds: number | undefined;
}

export interface HsmOverview {
  tokenLabel: string;
  manufacturer: string;
  model: string;
  /** The probe: 16 random bytes from the token within the probe's deadline. */
  probeOk: boolean;
  probeMs: number;
  sessions: HsmSessionStats;
  masterWrappingKey: boolean;
  capabilities: Record<string, boolean>;
}

export interface OpsOverview {
  generatedAt: Date;
  instances: InstanceOverview[];
  /** Keys of no instance (default keys), when there are any. */
  defaultKeys: { keys: KeyBreakdown; upcoming: UpcomingByInstance } | undefined;
  /** Every answered request and the throttled ones, per second over the last hour (per minute), all processes. */
  requestRate: RatePoint[];
  hsm: HsmOverview;
  queues: QueueOverview[];
  topVersions: VersionUsage[];
  versionsPastWarning: VersionUsage[];
  recentAudit: AuditEntry[];
}

/** What the overview reads outside Postgres (Redis counters, BullMQ, the HSM probe): given by the transport. */
export interface OpsSources {
  requestRateHistory(seconds: number): Promise<Array<{ second: number; requests: number; throttled: number }>>;
  queues(): Promise<QueueOverview[]>;
  probeHsm(): Promise<boolean>;
}

const EMPTY_BREAKDOWN: KeyBreakdown = { byState: {}, byOrigin: {}, byProtectionLevel: {} };
const EMPTY_UPCOMING: UpcomingByInstance = { counts: { rotation: 0, materialExpiry: 0, deletion: 0 }, first: [] };

/**
 * Everything the ops dashboard shows, for an admin: a handful of grouped queries (each on
 * an index), one Redis round trip per chart, the queues' counts and one HSM probe — the
 * same cost whether the deployment holds 100 keys or 100,000.
 * @throws Forbidden.NoPermission for a key-user
 */
export async function opsOverview(deps: ServiceDeps, sources: OpsSources, caller: Caller): Promise<OpsOverview> {
  assertAdmin(caller);
  const now = deps.clock.now();
  const horizon = new Date(now.getTime() + UPCOMING_DAYS * 86_400_000);
  const [[quotas, rates], breakdowns, upcoming, topVersions, pastWarning, recentAudit, requestRate, queues, probeOk, masterWrappingKey] = await Promise.all([
    quotaOverview(deps, systemCaller).then(async (q) => [q, await Promise.all(q.map((i) => instanceRateHistory(deps, i.instance.id, CHART_SECONDS)))] as const),
    keyBreakdowns(deps.db),
    upcomingEvents(deps.db, horizon),
    topEncryptingVersions(deps.db),
    versionsPastEncryptionWarning(deps.db),
    listAuditEvents(deps, { newestFirst: true, limit: 25 }),
    sources.requestRateHistory(CHART_SECONDS).then((s) => perMinute(s.map((p) => ({ second: p.second, requests: p.requests, throttled: p.throttled })))),
    sources.queues(),
    timed(() => sources.probeHsm()).then(([ok, ms]) => ({ ok, ms })),
    deps.hsm.hasMasterWrappingKey().catch(() => false),
  ]);
  const info = deps.hsm.info();
  return {
    generatedAt: now,
    instances: quotas.map((q, i) => ({
      ...q,
      keys: breakdowns.get(q.instance.id) ?? EMPTY_BREAKDOWN,
      upcoming: upcoming.get(q.instance.id) ?? EMPTY_UPCOMING,
      rate: perMinute((rates[i] ?? []).map((s) => ({ second: s.second, requests: s.admitted, throttled: s.throttled }))),
    })),
    defaultKeys: breakdowns.has('') ? { keys: breakdowns.get('')!, upcoming: upcoming.get('') ?? EMPTY_UPCOMING } : undefined,
    requestRate,
    hsm: {
      tokenLabel: info.tokenLabel,
      manufacturer: info.manufacturer,
      model: info.tokenModel,
      probeOk: probeOk.ok,
      probeMs: Math.round(probeOk.ms * 10) / 10,
      sessions: deps.hsm.sessionStats(),
      masterWrappingKey,
      capabilities: { ...info.capabilities },
    },
    queues,
    topVersions,
    versionsPastWarning: pastWarning,
    recentAudit,
  };
}

async function timed<T>(run: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await run();
  return [value, performance.now() - start];
}

/** Per-second samples (oldest first) → per-minute averages of calls per second. */
export function perMinute(samples: ReadonlyArray<{ second: number; requests: number; throttled: number }>): RatePoint[] {
  const buckets = new Map<number, RatePoint>();
  for (const s of samples) {
    const at = s.second - (s.second % CHART_BUCKET_SECONDS);
    let b = buckets.get(at);
    if (!b) {
      b = { at, requests: 0, throttled: 0 };
      buckets.set(at, b);
    }
    b.requests += s.requests;
    b.throttled += s.throttled;
  }
  return [...buckets.values()].map((b) => ({ at: b.at, requests: b.requests / CHART_BUCKET_SECONDS, throttled: b.throttled / CHART_BUCKET_SECONDS }));
}
