import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RequestObserver } from './request-outcome.js';

/**
 * Request rate of the whole deployment, per second, for the dashboard's "requests and
 * throttled over the last hour" chart. Each process counts answered requests in memory by
 * second and adds them to shared Redis counters once a second (one pipelined round trip,
 * never one per request); the counters live for an hour. A crash loses at most the last
 * second of this process's counts.
 */
export class RequestRateRecorder {
  /** unix second → [requests, throttled] not yet written. */
  private pending = new Map<number, [number, number]>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly redis: Redis,
    /** KMS_QUEUE_PREFIX: one namespace per deployment. */
    private readonly prefix: string,
    private readonly logger: Logger,
    private readonly retentionSeconds = RATE_RETENTION_SECONDS,
  ) {
    this.timer = setInterval(() => void this.flush(), 1_000);
    this.timer.unref();
  }

  readonly observe: RequestObserver = (outcome) => {
    const second = Math.floor(Date.now() / 1000);
    let counts = this.pending.get(second);
    if (!counts) {
      counts = [0, 0];
      this.pending.set(second, counts);
    }
    counts[0] += 1;
    if (outcome.code === 'Rejected.Throttling') counts[1] += 1;
  };

  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    const pipeline = this.redis.pipeline();
    for (const [second, [requests, throttled]] of batch) {
      const key = requestRateKey(this.prefix, second);
      pipeline.hincrby(key, 'requests', requests);
      if (throttled > 0) pipeline.hincrby(key, 'throttled', throttled);
      pipeline.expire(key, this.retentionSeconds);
    }
    try {
      await pipeline.exec();
    } catch (error) {
      // A chart loses a point; the service goes on.
      this.logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'request rate counters not written');
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}

export const RATE_RETENTION_SECONDS = 3_600;

function requestRateKey(prefix: string, second: number): string {
  return `${prefix}:rate:requests:${second}`;
}

export interface RequestRateSample {
  /** Unix seconds. */
  second: number;
  requests: number;
  throttled: number;
}

/**
 * The deployment's answered and throttled requests per second over the last `seconds`
 * seconds (at most an hour), oldest first; one pipelined round trip. The current second is
 * left out (still being counted); the second before it may still grow by one flush (1 s).
 */
export async function requestRateHistory(redis: Redis, prefix: string, seconds: number, nowMs = Date.now()): Promise<RequestRateSample[]> {
  const span = Math.max(1, Math.min(Math.floor(seconds), RATE_RETENTION_SECONDS));
  const last = Math.floor(nowMs / 1000) - 1;
  const pipeline = redis.pipeline();
  for (let s = last - span + 1; s <= last; s += 1) pipeline.hmget(requestRateKey(prefix, s), 'requests', 'throttled');
  const answers = (await pipeline.exec()) ?? [];
  return answers.map(([, value], i) => {
    const [requests, throttled] = (value as Array<string | null> | null) ?? [null, null];
    return { second: last - span + 1 + i, requests: Number(requests ?? 0), throttled: Number(throttled ?? 0) };
  });
}
