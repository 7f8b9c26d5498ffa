import { createHash } from 'node:crypto';
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
  /**
   * HsmEncryptedDatabase: unwrapped version keys kept as session objects per process (LRU;
   * evicted ones destroyed). Each costs ~7 KiB inside SoftHSM2 (measured), hence the default.
   */
  KMS_HSM_UNWRAPPED_KEY_CACHE_SIZE: z.coerce.number().int().min(1).max(1_000_000).default(4_096),
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
  /**
   * Which answered RPC requests get a log line: `all`; `sample` (the default: every refusal and
   * failure, and one success line in KMS_LOG_SAMPLE_EVERY, marked `sampled`); `errors` (refusals
   * and failures only). README "Performance" has what a line costs.
   */
  KMS_LOG_REQUESTS: z.enum(['all', 'sample', 'errors']).default('sample'),
  KMS_LOG_SAMPLE_EVERY: z.coerce.number().int().min(1).max(1_000_000).default(100),
  /** How long one Redis command may take (queued while Redis is away, or unanswered) before it fails: the nonce claim then answers 503. */
  KMS_REDIS_COMMAND_TIMEOUT_MS: z.coerce.number().int().min(50).max(60_000).default(1_000),
  KMS_SIGNATURE_MAX_SKEW_SECONDS: z.coerce.number().int().min(1).default(900),
  /** Whole-request deadline (headers and body): a stalled body is dropped after it, with a 408. */
  KMS_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(30_000),
  /** Deadline for the request headers; default min(20 s, KMS_REQUEST_TIMEOUT_MS); never above it. */
  KMS_HEADERS_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).optional(),
  /** How long a cached access key is trusted while the cache invalidation channel is down (README, Caching and invalidation); 0: no access-key cache. */
  KMS_ACCESS_KEY_CACHE_TTL_MS: z.coerce.number().int().min(0).max(300_000).default(1_000),
  /** Entries per metadata cache (cache/metadata-caches.ts); 0 turns that cache off. */
  KMS_CACHE_MAX_KEYS: z.coerce.number().int().min(0).max(10_000_000).default(10_000),
  KMS_CACHE_MAX_VERSIONS: z.coerce.number().int().min(0).max(10_000_000).default(20_000),
  KMS_CACHE_MAX_ALIASES: z.coerce.number().int().min(0).max(10_000_000).default(10_000),
  KMS_CACHE_MAX_ACCESS_KEYS: z.coerce.number().int().min(0).max(1_000_000).default(10_000),
  KMS_CACHE_MAX_INSTANCES: z.coerce.number().int().min(0).max(1_000_000).default(1_000),
  /** How long a cached entry is served while the invalidation channel is down: the cross-node bound then. */
  KMS_CACHE_FALLBACK_TTL_MS: z.coerce.number().int().min(0).max(60_000).default(1_000),
  /** How long a cached entry is served at most while the channel is up (a safety net for a lost publish). */
  KMS_CACHE_MAX_AGE_MS: z.coerce.number().int().min(0).max(86_400_000).default(60_000),
  /** How often each node reads the cache-change journal (cache/change-journal.ts); 0 turns the reader off. */
  KMS_CACHE_JOURNAL_POLL_MS: z.coerce.number().int().min(0).max(60_000).default(1_000),
  /** Comma-separated Host header values (host or host:port) this endpoint serves; empty: any. */
  KMS_ALLOWED_HOSTS: z.string().default(''),
  /** How often crypto-call audit events are written (the most a crash can lose: README, Audit trail). */
  KMS_AUDIT_FLUSH_MS: z.coerce.number().int().min(10).max(60_000).default(200),
  /** Crypto-call audit events held in memory at most (beyond: counted as dropped and logged). */
  KMS_AUDIT_BUFFER_MAX: z.coerce.number().int().min(100).max(10_000_000).default(100_000),
  /** How often the worker signs a digest of each audit chain in the HSM. */
  KMS_AUDIT_DIGEST_MINUTES: z.coerce.number().int().min(1).max(1440).default(10),
  /**
   * `manual`: the service's clock is the wall clock plus an offset the operator moves with
   * `kms clock` (test rigs: issue 14, the time machine; shared-offset-clock.ts). Only ever
   * on when set explicitly.
   */
  KMS_CLOCK: z.enum(['system', 'manual']).default('system'),
  /**
   * Per-account limits by class (services/throttling.ts; Alibaba's shared-gateway figures by
   * default): `on` enforces them across every process. Off by default. Each class can be set
   * on its own (calls per second).
   */
  KMS_ACCOUNT_RATE_LIMITS: z.enum(['on', 'off']).default('off'),
  KMS_RATE_LIMIT_SYMMETRIC_CRYPTO: z.coerce.number().int().min(1).optional(),
  KMS_RATE_LIMIT_ASYMMETRIC_CRYPTO: z.coerce.number().int().min(1).optional(),
  KMS_RATE_LIMIT_RE_ENCRYPT: z.coerce.number().int().min(1).optional(),
  KMS_RATE_LIMIT_CREATE_KEY: z.coerce.number().int().min(1).optional(),
  KMS_RATE_LIMIT_READ: z.coerce.number().int().min(1).optional(),
  KMS_RATE_LIMIT_LIST_TAGS: z.coerce.number().int().min(1).optional(),
  KMS_RATE_LIMIT_WRITE: z.coerce.number().int().min(1).optional(),
  /** How often each process adds its counted encryptions per key version to Postgres. */
  KMS_USAGE_FLUSH_MS: z.coerce.number().int().min(50).max(300_000).default(5_000),
  /** Bearer token for `/metrics` from other hosts (loopback scrapes need none unless required). */
  KMS_METRICS_TOKEN: z.string().min(16, 'at least 16 characters').optional(),
  /** `true`: `/metrics` wants the token from loopback too. */
  KMS_METRICS_REQUIRE_TOKEN: z
    .enum(['true', 'false', '1', '0'])
    .default('false')
    .transform((v) => v === 'true' || v === '1'),
  /** `/console` session cookie `Secure`: `auto` (when the request came over TLS or X-Forwarded-Proto: https), `true`, `false`. */
  KMS_CONSOLE_SECURE_COOKIE: z.enum(['auto', 'true', 'false']).default('auto'),
  /** How long a `/console` sign-in lasts (hours). */
  KMS_CONSOLE_SESSION_HOURS: z.coerce.number().min(0.01).max(720).default(8),
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
    /** KMS_HSM_UNWRAPPED_KEY_CACHE_SIZE */
    unwrappedKeyCacheSize: number;
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
  /** KMS_LOG_REQUESTS and KMS_LOG_SAMPLE_EVERY (observability/request-log.ts). */
  requestLog: { mode: 'all' | 'sample' | 'errors'; sampleEvery: number };
  /** KMS_REDIS_COMMAND_TIMEOUT_MS (store/redis.ts). */
  redisCommandTimeoutMs: number;
  maxSkewSeconds: number;
  http: {
    requestTimeoutMs: number;
    /** At most requestTimeoutMs (Node refuses a larger one). */
    headersTimeoutMs: number;
  };
  /** Access-key cache bound while the invalidation channel is down; 0 disables that cache. */
  accessKeyCacheTtlMs: number;
  /** The metadata caches (KMS_CACHE_*): entries per kind and age bounds. */
  cache: {
    sizes: { keys: number; versions: number; aliases: number; accessKeys: number; instances: number };
    fallbackTtlMs: number;
    maxAgeMs: number;
    /** KMS_CACHE_JOURNAL_POLL_MS: the bound on a change whose publish never went out; 0: off. */
    journalPollMs: number;
  };
  /** Lower-cased Host values accepted; empty accepts any (see api/rpc.ts checkHost). */
  allowedHosts: string[];
  /** The audit trail (README, Audit trail). */
  audit: { flushEveryMs: number; maxBuffered: number; digestEveryMinutes: number };
  /** `system` (the default) or `manual` (KMS_CLOCK): see shared-offset-clock.ts. */
  clock: 'system' | 'manual';
  /** KMS_ACCOUNT_RATE_LIMITS and the per-class settings (calls per second; unset: Alibaba's figure). */
  accountRateLimits: { enabled: boolean; perClass: AccountRateLimitSettings };
  /** KMS_USAGE_FLUSH_MS. */
  usageFlushMs: number;
  metrics: {
    /** SHA-256 of KMS_METRICS_TOKEN (the token itself is not kept); undefined: no token set. */
    tokenSha256: Buffer | undefined;
    requireToken: boolean;
  };
  /** The ops dashboard (README, "Operations: dashboard"). */
  console: { secureCookie: 'auto' | 'always' | 'never'; sessionTtlSeconds: number };
}

/** Per-class overrides of the account limits (services/throttling.ts names the classes and defaults). */
export interface AccountRateLimitSettings {
  symmetricCrypto?: number | undefined;
  asymmetricCrypto?: number | undefined;
  reEncrypt?: number | undefined;
  createKey?: number | undefined;
  read?: number | undefined;
  listTags?: number | undefined;
  write?: number | undefined;
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
      unwrappedKeyCacheSize: e.KMS_HSM_UNWRAPPED_KEY_CACHE_SIZE,
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
    requestLog: { mode: e.KMS_LOG_REQUESTS, sampleEvery: e.KMS_LOG_SAMPLE_EVERY },
    redisCommandTimeoutMs: e.KMS_REDIS_COMMAND_TIMEOUT_MS,
    maxSkewSeconds: e.KMS_SIGNATURE_MAX_SKEW_SECONDS,
    http: {
      requestTimeoutMs: e.KMS_REQUEST_TIMEOUT_MS,
      headersTimeoutMs: e.KMS_HEADERS_TIMEOUT_MS ?? Math.min(20_000, e.KMS_REQUEST_TIMEOUT_MS),
    },
    accessKeyCacheTtlMs: e.KMS_ACCESS_KEY_CACHE_TTL_MS,
    cache: {
      sizes: {
        keys: e.KMS_CACHE_MAX_KEYS,
        versions: e.KMS_CACHE_MAX_VERSIONS,
        aliases: e.KMS_CACHE_MAX_ALIASES,
        accessKeys: e.KMS_CACHE_MAX_ACCESS_KEYS,
        instances: e.KMS_CACHE_MAX_INSTANCES,
      },
      fallbackTtlMs: e.KMS_CACHE_FALLBACK_TTL_MS,
      maxAgeMs: e.KMS_CACHE_MAX_AGE_MS,
      journalPollMs: e.KMS_CACHE_JOURNAL_POLL_MS,
    },
    allowedHosts: e.KMS_ALLOWED_HOSTS.split(',')
      .map((h) => h.trim().toLowerCase())
      .filter((h) => h !== ''),
    clock: e.KMS_CLOCK,
    audit: { flushEveryMs: e.KMS_AUDIT_FLUSH_MS, maxBuffered: e.KMS_AUDIT_BUFFER_MAX, digestEveryMinutes: e.KMS_AUDIT_DIGEST_MINUTES },
    accountRateLimits: {
      enabled: e.KMS_ACCOUNT_RATE_LIMITS === 'on',
      perClass: {
        symmetricCrypto: e.KMS_RATE_LIMIT_SYMMETRIC_CRYPTO,
        asymmetricCrypto: e.KMS_RATE_LIMIT_ASYMMETRIC_CRYPTO,
        reEncrypt: e.KMS_RATE_LIMIT_RE_ENCRYPT,
        createKey: e.KMS_RATE_LIMIT_CREATE_KEY,
        read: e.KMS_RATE_LIMIT_READ,
        listTags: e.KMS_RATE_LIMIT_LIST_TAGS,
        write: e.KMS_RATE_LIMIT_WRITE,
      },
    },
    usageFlushMs: e.KMS_USAGE_FLUSH_MS,
    metrics: {
      tokenSha256: e.KMS_METRICS_TOKEN ? createHash('sha256').update(e.KMS_METRICS_TOKEN, 'utf8').digest() : undefined,
      requireToken: e.KMS_METRICS_REQUIRE_TOKEN,
    },
    console: {
      secureCookie: e.KMS_CONSOLE_SECURE_COOKIE === 'auto' ? 'auto' : e.KMS_CONSOLE_SECURE_COOKIE === 'true' ? 'always' : 'never',
      sessionTtlSeconds: Math.round(e.KMS_CONSOLE_SESSION_HOURS * 3600),
    },
  };
}
