import type { KmsServices } from '../kms.js';

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
}

/** `/health`: the probed HSM capabilities (DESIGN.md) and whether Postgres and Redis answer. */
export async function healthReport(kms: KmsServices): Promise<HealthReport> {
  const info = kms.deps.hsm.info();
  const [database, redis] = await Promise.all([
    kms.deps.db.query('SELECT 1').then(() => 'ok' as const, () => 'unreachable' as const),
    kms.redis.ping().then(() => 'ok' as const, () => 'unreachable' as const),
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
  };
}
