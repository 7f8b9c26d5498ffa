import { Redis } from 'ioredis';

/** How soon a lost connection is retried at most (ioredis backs off 50 ms, 100 ms, … up to this). */
export const REDIS_RECONNECT_CAP_MS = 250;

/**
 * The service's shared Redis client (nonces, rate windows, cache invalidation, the shared clock).
 *
 * - Every command answers or fails within `commandTimeoutMs` (KMS_REDIS_COMMAND_TIMEOUT_MS,
 *   1 s), also while it waits in the offline queue for a lost connection: a Redis outage is a
 *   503 within that bound, never a hung request (issue 19 item 3). The offline queue stays on
 *   so start-up (and a reconnect) can issue commands before the connection is ready.
 * - Reconnects back off to at most REDIS_RECONNECT_CAP_MS, so service resumes within that
 *   much of Redis returning.
 * - Auto-pipelining: commands issued in the same tick (64 connections' nonce claims) go out
 *   in one write and come back in one read.
 */
export function createRedisClient(url: string, options: { commandTimeoutMs: number }): Redis {
  return new Redis(url, {
    commandTimeout: options.commandTimeoutMs,
    enableOfflineQueue: true,
    // A command in flight when the connection drops is not re-sent: a SET NX that reached
    // Redis would read as a replay the second time.
    maxRetriesPerRequest: 0,
    retryStrategy: (times: number) => Math.min(times * 50, REDIS_RECONNECT_CAP_MS),
    enableAutoPipelining: true,
    lazyConnect: false,
  });
}
