import type { KmsServices } from '../kms.js';
import { sendJson } from './http/reply.js';
import type { RouteHandler } from './route.js';

export interface HealthReport {
  status: 'ok' | 'degraded';
  hsm: {
    tokenLabel: string;
    manufacturer: string;
    library: string;
    model: string;
    importStrict: boolean;
    /** What the start-up probe found the token really does. */
    capabilities: Record<string, boolean>;
  };
  database: 'ok' | 'unreachable';
  redis: 'ok' | 'unreachable';
  /** KMS_CLOCK, and how far the service clock runs ahead of the wall clock (manual: `kms clock`). */
  clock: { mode: 'system' | 'manual'; now: string; offsetSeconds: number };
}

/** `/health`: the probed HSM capabilities (DESIGN.md) and whether Postgres and Redis answer. */
export async function healthReport(kms: KmsServices): Promise<HealthReport> {
  const info = kms.deps.hsm.info();
  const [database, redis] = await Promise.all([
    kms.deps.db.query('SELECT 1').then(() => 'ok' as const, () => 'unreachable' as const),
    // Not connected: say so at once instead of queueing a PING for the command timeout.
    kms.redis.status !== 'ready' ? ('unreachable' as const) : kms.redis.ping().then(() => 'ok' as const, () => 'unreachable' as const),
  ]);
  return {
    status: database === 'ok' && redis === 'ok' ? 'ok' : 'degraded',
    hsm: {
      tokenLabel: info.tokenLabel,
      manufacturer: info.manufacturer,
      library: info.library,
      model: info.tokenModel,
      importStrict: kms.deps.config.hsm.importStrict,
      capabilities: { ...info.capabilities },
    },
    database,
    redis,
    clock: clockReport(kms),
  };
}

function clockReport(kms: KmsServices): HealthReport['clock'] {
  const wall = Date.now();
  const now = kms.deps.clock.now();
  // Measured rather than asked of the clock, so an injected test clock reports its offset too.
  return { mode: kms.deps.config.clock, now: now.toISOString(), offsetSeconds: Math.round((now.getTime() - wall) / 1000) };
}

/** `GET /health`: 200 with the report when Postgres and Redis answer, else 503 with it. */
export function healthRoute(kms: KmsServices): RouteHandler {
  return async (_req, res) => {
    const report = await healthReport(kms);
    sendJson(res, report.status === 'ok' ? 200 : 503, JSON.stringify(report));
  };
}
