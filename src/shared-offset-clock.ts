/**
 * The rig's time machine (issue 14 §4, KMS_CLOCK=manual): the service's clock is the wall
 * clock plus an offset that lives in Redis, under the queue prefix, shared by every process
 * (API nodes, workers, CLI verbs) that uses that Redis and prefix. `kms clock` moves it.
 *
 * Redis layout (prefix = KMS_QUEUE_PREFIX):
 * - `${prefix}:clock:offset-ms`: the offset in whole milliseconds (absent: 0). It is kept
 *   across restarts, so a rig restarted in manual mode resumes at the service time its data
 *   was written at.
 * - `${prefix}:clock`: the pub/sub channel; every change is published there, with the new
 *   offset, in the same Lua script that writes it (so the last message any process reads is
 *   the last value written, whatever the interleaving of two operators).
 *
 * Propagation bound: a change reaches every subscribed process as one pub/sub message —
 * milliseconds on a local Redis. A process whose subscription was down re-reads the offset
 * when it reconnects, and every process re-reads it every `RESYNC_EVERY_MS` regardless, so none
 * lags a change by more than that (plus the time its Redis connection is down).
 *
 * Service time only moves forward: `advance` takes a positive duration, `set` a time no earlier
 * than the current service time. Moving back would make dates already recorded (versions'
 * creation, LastRotationDate, DeleteDate, import-token expiry) lie in the service's future and
 * could flip work between due and not due; a rig that wants an earlier time starts fresh
 * (new data dir, or a new KMS_QUEUE_PREFIX). Each process also keeps the largest offset it has
 * seen, so its own `now()` never goes back either.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from './clock.js';

/** How often a process re-reads the offset even without a message (the worst-case lag). */
export const RESYNC_EVERY_MS = 5_000;

/** The furthest the service clock may run ahead of the wall clock (keeps every date printable). */
export const MAX_OFFSET_MS = 100 * 365 * 24 * 3_600_000;

export interface SharedClockKeys {
  offset: string;
  channel: string;
}

export const sharedClockKeys = (prefix: string): SharedClockKeys => ({
  offset: `${prefix}:clock:offset-ms`,
  channel: `${prefix}:clock`,
});

/** Parses a stored or published offset; anything else (absent, garbage) counts as none. */
function parseOffset(text: string | null | undefined): number | undefined {
  if (text === null || text === undefined) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/**
 * A `Clock` whose `now()` is synchronous (every use case calls it in the middle of its work):
 * wall clock + the last offset this process has seen, kept current by the subscription.
 */
export class SharedOffsetClock implements Clock {
  private current = 0;
  private resyncTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly keys: SharedClockKeys,
    private readonly redis: Redis,
    private readonly subscriber: Redis,
  ) {}

  /**
   * Subscribes (on a duplicate of `redis`: a subscribed connection can do nothing else), then
   * reads the stored offset — in that order, so a change made between the two is not missed.
   */
  static async start(redis: Redis, prefix: string, logger?: Logger): Promise<SharedOffsetClock> {
    const keys = sharedClockKeys(prefix);
    const subscriber = redis.duplicate();
    // The error text names host and port at most (never the URL's password).
    subscriber.on('error', (error: Error) => logger?.warn({ err: error.message }, 'shared clock: redis subscription error'));
    const clock = new SharedOffsetClock(keys, redis, subscriber);
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === keys.channel) clock.observe(parseOffset(message));
    });
    try {
      await subscriber.subscribe(keys.channel);
      await clock.resync();
    } catch (error) {
      subscriber.disconnect();
      throw error;
    }
    // ioredis re-subscribes after a reconnect; what was published meanwhile is read back here.
    subscriber.on('ready', () => {
      clock.resync().catch(() => undefined);
    });
    clock.resyncTimer = setInterval(() => {
      clock.resync().catch(() => undefined);
    }, RESYNC_EVERY_MS);
    clock.resyncTimer.unref();
    return clock;
  }

  now(): Date {
    return new Date(Date.now() + this.current);
  }

  /** How far the service clock runs ahead of the wall clock, in milliseconds. */
  get offsetMs(): number {
    return this.current;
  }

  /** Re-reads the stored offset (the subscription normally makes this unnecessary). */
  async resync(): Promise<void> {
    this.observe(parseOffset(await this.redis.get(this.keys.offset)));
  }

  async close(): Promise<void> {
    clearInterval(this.resyncTimer);
    await this.subscriber.quit().catch(() => this.subscriber.disconnect());
  }

  /** Forward only: a message and a re-read racing each other can never move `now()` back. */
  private observe(offset: number | undefined): void {
    if (offset !== undefined && offset > this.current) this.current = offset;
  }
}

// ---- The operator's side (`kms clock`): read and move the shared offset. ----

/** Thrown when a move would take the service clock back, or too far ahead. */
export class ClockMoveRefused extends Error {}

export type ClockMove = { advanceMs: number } | { setTo: Date };

export interface ClockReading {
  offsetMs: number;
  /** Wall clock + offset, as the processes see it. */
  now: Date;
}

export interface ClockMoved extends ClockReading {
  /** How many processes received the change (subscribers of the channel when it was published). */
  notified: number;
}

/**
 * Atomically: read the offset, refuse a move back (or past MAX_OFFSET_MS), write it, publish it.
 * Offsets are whole milliseconds, formatted with %.0f so Lua never writes `1e+12`.
 */
const MOVE_CLOCK_SCRIPT = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local target
if ARGV[1] == 'advance' then target = current + tonumber(ARGV[2]) else target = tonumber(ARGV[2]) end
if target < current then return {'backwards', string.format('%.0f', current), 0} end
if target > tonumber(ARGV[4]) then return {'too-far', string.format('%.0f', current), 0} end
local text = string.format('%.0f', target)
redis.call('SET', KEYS[1], text)
local notified = redis.call('PUBLISH', ARGV[3], text)
return {'ok', text, notified}
`;

export async function readSharedClock(redis: Redis, prefix: string, wallNow = Date.now()): Promise<ClockReading> {
  const offsetMs = parseOffset(await redis.get(sharedClockKeys(prefix).offset)) ?? 0;
  return { offsetMs, now: new Date(wallNow + offsetMs) };
}

/**
 * How many processes run a manual clock on this prefix: the channel's subscribers. A live
 * count, so a rig that was once manual and now runs with the system clock counts 0.
 */
export async function manualClockProcesses(redis: Redis, prefix: string): Promise<number> {
  const reply = (await redis.pubsub('NUMSUB', sharedClockKeys(prefix).channel)) as unknown[];
  return Number(reply[1] ?? 0);
}

/**
 * Moves the service clock of every process on `prefix`.
 * @throws ClockMoveRefused for a zero or negative advance, a `set` before the current service
 *   time, or an offset beyond MAX_OFFSET_MS; nothing is changed then.
 */
export async function moveSharedClock(redis: Redis, prefix: string, move: ClockMove, wallNow = Date.now()): Promise<ClockMoved> {
  const keys = sharedClockKeys(prefix);
  let args: [string, string];
  if ('advanceMs' in move) {
    if (!Number.isSafeInteger(move.advanceMs) || move.advanceMs <= 0) throw new ClockMoveRefused('The clock only moves forward: advance by a positive duration.');
    args = ['advance', String(move.advanceMs)];
  } else {
    const target = move.setTo.getTime();
    if (!Number.isFinite(target)) throw new ClockMoveRefused('Not a valid date.');
    if (target < wallNow) throw new ClockMoveRefused(`The clock only moves forward: ${move.setTo.toISOString()} is before the wall clock.`);
    args = ['set', String(target - wallNow)];
  }
  const [status, text, notified] = (await redis.eval(MOVE_CLOCK_SCRIPT, 1, keys.offset, args[0], args[1], keys.channel, String(MAX_OFFSET_MS))) as [
    string,
    string,
    number,
  ];
  const offsetMs = Number(text);
  if (status === 'backwards') {
    throw new ClockMoveRefused(`The clock only moves forward: the service time is already ${new Date(wallNow + offsetMs).toISOString()}.`);
  }
  if (status === 'too-far') throw new ClockMoveRefused('The service clock may run at most 100 years ahead of the wall clock.');
  return { offsetMs, now: new Date(wallNow + offsetMs), notified: Number(notified) };
}
