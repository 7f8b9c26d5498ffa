import path from 'node:path';
import { z } from 'zod';

/**
 * Service configuration, read once from the environment by the composition root.
 * Secrets (PINs) are not part of it: they are read by hsm/provision.ts from env or 0600 files
 * at the moment they are needed, and never kept on an enumerable property.
 */
const envSchema = z.object({
  KMS_DATA_DIR: z.string().default('.kms'),
  KMS_HOST: z.string().default('127.0.0.1'),
  KMS_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  DATABASE_URL: z.string().optional(),
  /** Connections in the service's pg pool (the quickstart's embedded store: 1, see cli/local-kms.ts). */
  KMS_DB_POOL_SIZE: z.coerce.number().int().min(1).max(1000).default(10),
  REDIS_URL: z.string().optional(),
  KMS_PKCS11_MODULE: z.string().default('/usr/lib/softhsm/libsofthsm2.so'),
  KMS_HSM_TOKEN_LABEL: z.string().min(1).max(32).default('hsm-kms'),
  KMS_HSM_SESSIONS: z.coerce.number().int().min(1).max(256).default(8),
  /** Strict import mode: never decode OAEP on the host when the token lacks the mechanism. */
  KMS_IMPORT_STRICT: z
    .enum(['true', 'false', '1', '0'])
    .default('false')
    .transform((v) => v === 'true' || v === '1'),
  KMS_WRAPPING_KEY_POOL_SIZE: z.coerce.number().int().min(0).max(64).default(4),
  /** Redis key prefix of every BullMQ queue (tests use a unique one per server). */
  KMS_QUEUE_PREFIX: z.string().min(1).max(64).regex(/^[\w.-]+$/, 'letters, digits, _ . - only').default('hsm-kms'),
  /** How often the sweeper looks for due work a lost job missed (material expiry, expired wrapping keys). */
  KMS_SWEEP_INTERVAL_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
  KMS_REGION: z.string().default('cn-hangzhou'),
  KMS_ACCOUNT_ID: z.string().default('1234567890123456'),
  KMS_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  KMS_SIGNATURE_MAX_SKEW_SECONDS: z.coerce.number().int().min(1).default(900),
  /** Whole-request deadline (headers and body): a stalled body is dropped after it, with a 408. */
  KMS_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(30_000),
  /** Deadline for the request headers; default min(20 s, KMS_REQUEST_TIMEOUT_MS); never above it. */
  KMS_HEADERS_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).optional(),
  /** How long a process trusts its cached access key (status, role, secret): the bound on how long a disabled key keeps working there. */
  KMS_ACCESS_KEY_CACHE_TTL_MS: z.coerce.number().int().min(0).max(300_000).default(5_000),
  /** Comma-separated Host header values (host or host:port) this endpoint serves; empty: any. */
  KMS_ALLOWED_HOSTS: z.string().default(''),
  /**
   * `manual`: the service's clock is the wall clock plus an offset the operator moves with
   * `kms clock` (test rigs: issue 14, the time machine; shared-offset-clock.ts). Only ever
   * on when set explicitly.
   */
  KMS_CLOCK: z.enum(['system', 'manual']).default('system'),
});

export interface KmsConfig {
  dataDir: string;
  host: string;
  port: number;
  databaseUrl: string | undefined;
  /** Size of the pg pool (KMS_DB_POOL_SIZE). */
  databasePoolSize: number;
  redisUrl: string | undefined;
  hsm: {
    modulePath: string;
    tokenLabel: string;
    sessions: number;
    importStrict: boolean;
    wrappingKeyPoolSize: number;
  };
  jobs: {
    queuePrefix: string;
    sweepIntervalSeconds: number;
  };
  region: string;
  accountId: string;
  logLevel: string;
  maxSkewSeconds: number;
  http: {
    requestTimeoutMs: number;
    /** At most requestTimeoutMs (Node refuses a larger one). */
    headersTimeoutMs: number;
  };
  /** 0 disables the cache (every request reads the key and unseals its secret). */
  accessKeyCacheTtlMs: number;
  /** Lower-cased Host values accepted; empty accepts any (see api/rpc.ts checkHost). */
  allowedHosts: string[];
  /** `system` (the default) or `manual` (KMS_CLOCK): see shared-offset-clock.ts. */
  clock: 'system' | 'manual';
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): KmsConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`Invalid configuration: ${issues}`);
  }
  const e = parsed.data;
  if (e.KMS_HEADERS_TIMEOUT_MS !== undefined && e.KMS_HEADERS_TIMEOUT_MS > e.KMS_REQUEST_TIMEOUT_MS) {
    throw new Error('Invalid configuration: KMS_HEADERS_TIMEOUT_MS: must not exceed KMS_REQUEST_TIMEOUT_MS');
  }
  return {
    dataDir: path.resolve(e.KMS_DATA_DIR),
    host: e.KMS_HOST,
    port: e.KMS_PORT,
    databaseUrl: e.DATABASE_URL || undefined,
    databasePoolSize: e.KMS_DB_POOL_SIZE,
    redisUrl: e.REDIS_URL || undefined,
    hsm: {
      modulePath: e.KMS_PKCS11_MODULE,
      tokenLabel: e.KMS_HSM_TOKEN_LABEL,
      sessions: e.KMS_HSM_SESSIONS,
      importStrict: e.KMS_IMPORT_STRICT,
      wrappingKeyPoolSize: e.KMS_WRAPPING_KEY_POOL_SIZE,
    },
    jobs: {
      queuePrefix: e.KMS_QUEUE_PREFIX,
      sweepIntervalSeconds: e.KMS_SWEEP_INTERVAL_SECONDS,
    },
    region: e.KMS_REGION,
    accountId: e.KMS_ACCOUNT_ID,
    logLevel: e.KMS_LOG_LEVEL,
    maxSkewSeconds: e.KMS_SIGNATURE_MAX_SKEW_SECONDS,
    http: {
      requestTimeoutMs: e.KMS_REQUEST_TIMEOUT_MS,
      headersTimeoutMs: e.KMS_HEADERS_TIMEOUT_MS ?? Math.min(20_000, e.KMS_REQUEST_TIMEOUT_MS),
    },
    accessKeyCacheTtlMs: e.KMS_ACCESS_KEY_CACHE_TTL_MS,
    allowedHosts: e.KMS_ALLOWED_HOSTS.split(',')
      .map((h) => h.trim().toLowerCase())
      .filter((h) => h !== ''),
    clock: e.KMS_CLOCK,
  };
}
