import type { Redis } from 'ioredis';
import { unavailable } from '../domain/errors.js';

/**
 * Per-second rate windows shared by every process, in Redis. A window is named by a base key;
 * its counters are `<base>:<unix second>` (admitted calls) and `<base>:throttled:<second>`
 * (refused ones), each kept for `retentionSeconds` so the dashboard can chart the last hour.
 * Time is Redis's own (`TIME` inside the script), so processes with skewed clocks still count
 * into the same second.
 *
 * Admission is a sliding window over two one-second buckets: a call is admitted while
 * `previous × (1 − elapsed) + current < limit`, where `elapsed` is the fraction of the
 * current second gone. Under steady overload that admits `limit` calls per second, spread
 * over the second rather than all at its start. One script call: one Redis round trip.
 *
 * The script builds its counter keys from the base key and the time, which a Redis Cluster
 * cannot route; the service expects one Redis (or one shard per deployment).
 */
const ADMIT_SCRIPT = `
-- KEYS[2], when given: the request's SignatureNonce, claimed first (SET NX EX ARGV[3]); a
-- replay answers -1 and counts nothing (services/nonces.ts: one round trip for both).
-- KEYS[3], with KEYS[2]: the replay cache's epoch (services/nonces.ts, issue 19 item 4a),
-- read in the same script; the answer is then {verdict, epoch}.
local function admit()
  if KEYS[2] and not redis.call('SET', KEYS[2], '1', 'EX', ARGV[3], 'NX') then return -1 end
  local limit = tonumber(ARGV[1])
  local t = redis.call('TIME')
  local second = tonumber(t[1])
  local elapsed = tonumber(t[2]) / 1000000
  local current = KEYS[1] .. ':' .. second
  local counts = redis.call('MGET', current, KEYS[1] .. ':' .. (second - 1))
  local used = tonumber(counts[1] or '0')
  local previous = tonumber(counts[2] or '0')
  if previous * (1 - elapsed) + used >= limit then
    local throttled = KEYS[1] .. ':throttled:' .. second
    if redis.call('INCR', throttled) == 1 then redis.call('EXPIRE', throttled, ARGV[2]) end
    return 0
  end
  if redis.call('INCR', current) == 1 then redis.call('EXPIRE', current, ARGV[2]) end
  return 1
end
local verdict = admit()
if KEYS[3] then return {verdict, redis.call('GET', KEYS[3])} end
return verdict
`;

/** The same estimate, read only: calls admitted over the last second, per window. */
const USED_SCRIPT = `
local t = redis.call('TIME')
local second = tonumber(t[1])
local elapsed = tonumber(t[2]) / 1000000
local out = {}
for i, base in ipairs(KEYS) do
  local used = tonumber(redis.call('GET', base .. ':' .. second) or '0')
  local previous = tonumber(redis.call('GET', base .. ':' .. (second - 1)) or '0')
  out[i] = tostring(previous * (1 - elapsed) + used)
end
return out
`;

/** One second of a window: admitted and throttled calls. */
export interface RateSample {
  /** Unix seconds (Redis time). */
  second: number;
  admitted: number;
  throttled: number;
}

/** What an admission found: admitted, over the limit (counted as throttled), or a replayed nonce (nothing counted). */
export type Admission = 'admitted' | 'throttled' | 'replay';

/** A SignatureNonce to claim in the same round trip (its Redis key and lifetime: services/nonces.ts). */
export interface NonceToClaim {
  key: string;
  ttlSeconds: number;
  /** The replay cache's epoch key, read in the same script (services/nonces.ts). */
  epochKey: string;
}

/** An admission that claimed a nonce, with the replay cache's epoch as read in the same script (null: none yet). */
export interface NonceAdmission {
  admission: Admission;
  epoch: string | null;
}

/** The port the services use (a Redis implementation below; nothing else needs one). */
export interface RateWindows {
  /**
   * Counts a call in `window` if it stays under `limitPerSecond` (else counts it as throttled).
   */
  admit(window: string, limitPerSecond: number): Promise<Admission>;
  /** `admit`, first claiming the request's nonce in the same script (`replay` when it was used). */
  admitClaiming(window: string, limitPerSecond: number, nonce: NonceToClaim): Promise<NonceAdmission>;
  /** Calls admitted over the last second, per window (sliding estimate, rounded). */
  usedOverLastSecond(windows: readonly string[]): Promise<number[]>;
  /** Per-second admitted/throttled counts of `window` over the last `seconds` seconds, oldest first. */
  history(window: string, seconds: number): Promise<RateSample[]>;
}

type RedisWithRateScripts = Redis & {
  kmsRateAdmit(keys: number, ...keysAndArgs: Array<string | number>): Promise<number | [number, string | null]>;
  kmsRateUsed(count: number, ...bases: string[]): Promise<string[]>;
};

export class RedisRateWindows implements RateWindows {
  private readonly redis: RedisWithRateScripts;

  constructor(
    redis: Redis,
    /** Prepended to every window name (KMS_QUEUE_PREFIX: one namespace per deployment). */
    private readonly prefix: string,
    private readonly retentionSeconds = 3_600,
  ) {
    // defineCommand sends EVALSHA (EVAL once on NOSCRIPT): one round trip per call.
    if (!('kmsRateAdmit' in redis)) {
      redis.defineCommand('kmsRateAdmit', { lua: ADMIT_SCRIPT });
      redis.defineCommand('kmsRateUsed', { lua: USED_SCRIPT });
    }
    this.redis = redis as RedisWithRateScripts;
  }

  async admit(window: string, limitPerSecond: number): Promise<Admission> {
    let verdict: number | [number, string | null];
    try {
      verdict = await this.redis.kmsRateAdmit(1, this.base(window), limitPerSecond, this.retentionSeconds);
    } catch {
      throw unavailable('The rate limiter is not reachable.');
    }
    return admissionOf(Array.isArray(verdict) ? verdict[0] : verdict);
  }

  async admitClaiming(window: string, limitPerSecond: number, nonce: NonceToClaim): Promise<NonceAdmission> {
    let answer: number | [number, string | null];
    try {
      answer = await this.redis.kmsRateAdmit(3, this.base(window), nonce.key, nonce.epochKey, limitPerSecond, this.retentionSeconds, nonce.ttlSeconds);
    } catch {
      throw unavailable('The replay cache is not reachable.');
    }
    const [verdict, epoch] = Array.isArray(answer) ? answer : [answer, null];
    return { admission: admissionOf(verdict), epoch };
  }

  async usedOverLastSecond(windows: readonly string[]): Promise<number[]> {
    if (windows.length === 0) return [];
    const answers = await this.redis.kmsRateUsed(windows.length, ...windows.map((w) => this.base(w)));
    // Floored: a call is admitted while the estimate is under the limit, so it can stand just
    // under limit + 1 right after; rounding reported 51 of a spec of 50 (found by a fresh-clone run).
    return answers.map((a) => Math.floor(Number(a)));
  }

  async history(window: string, seconds: number): Promise<RateSample[]> {
    const span = Math.max(1, Math.min(Math.floor(seconds), this.retentionSeconds));
    const [now] = await this.redis.time();
    const base = this.base(window);
    const firstSecond = Number(now) - span + 1;
    const keys: string[] = [];
    for (let s = firstSecond; s <= Number(now); s += 1) keys.push(`${base}:${s}`, `${base}:throttled:${s}`);
    const values = await this.redis.mget(...keys);
    const samples: RateSample[] = [];
    for (let i = 0; i < span; i += 1) {
      samples.push({ second: firstSecond + i, admitted: Number(values[2 * i] ?? 0), throttled: Number(values[2 * i + 1] ?? 0) });
    }
    return samples;
  }

  private base(window: string): string {
    return `${this.prefix}:rate:${window}`;
  }
}

function admissionOf(verdict: number): Admission {
  return verdict === 1 ? 'admitted' : verdict === 0 ? 'throttled' : 'replay';
}
