import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  ClockMoveRefused,
  SharedOffsetClock,
  manualClockProcesses,
  moveSharedClock,
  readSharedClock,
  sharedClockKeys,
} from '../../src/shared-offset-clock.js';

/**
 * The time machine's shared clock on the real Redis: several processes (here, clock instances
 * with their own connections) on one queue prefix see one service time, moved by the operator.
 */
const DAY = 86_400_000;
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const connections: Redis[] = [];
const clocks: SharedOffsetClock[] = [];
const prefixes: string[] = [];

function connect(): Redis {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2 });
  connections.push(redis);
  return redis;
}

async function startClock(prefix: string): Promise<SharedOffsetClock> {
  const clock = await SharedOffsetClock.start(connect(), prefix);
  clocks.push(clock);
  return clock;
}

function newPrefix(): string {
  const prefix = `test-clock-${randomUUID()}`;
  prefixes.push(prefix);
  return prefix;
}

/** Polls until `check` holds, failing after `deadlineMs` (pub/sub delivery is asynchronous). */
async function eventually(check: () => boolean, deadlineMs = 2_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

afterEach(async () => {
  await Promise.all(clocks.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  const redis = connect();
  for (const prefix of prefixes) await redis.del(sharedClockKeys(prefix).offset);
  for (const c of connections) c.disconnect();
});

describe('SharedOffsetClock', () => {
  it('starts at the wall clock when no offset was ever set', async () => {
    const clock = await startClock(newPrefix());
    expect(clock.offsetMs).toBe(0);
    expect(Math.abs(clock.now().getTime() - Date.now())).toBeLessThan(50);
  });

  it('a move through the operator side reaches every clock on the prefix, and no other prefix', async () => {
    const prefix = newPrefix();
    const [a, b] = [await startClock(prefix), await startClock(prefix)];
    const elsewhere = await startClock(newPrefix());
    expect(await manualClockProcesses(connect(), prefix)).toBe(2);

    const moved = await moveSharedClock(connect(), prefix, { advanceMs: 30 * DAY });
    expect(moved.offsetMs).toBe(30 * DAY);
    expect(moved.notified).toBe(2);
    await eventually(() => a.offsetMs === 30 * DAY && b.offsetMs === 30 * DAY);
    expect(Math.abs(b.now().getTime() - (Date.now() + 30 * DAY))).toBeLessThan(50);
    expect(elsewhere.offsetMs).toBe(0);

    // Advances add up; `set` lands on the given time.
    await moveSharedClock(connect(), prefix, { advanceMs: DAY });
    await eventually(() => a.offsetMs === 31 * DAY);
    const target = new Date(Date.now() + 40 * DAY);
    const set = await moveSharedClock(connect(), prefix, { setTo: target });
    expect(Math.abs(set.now.getTime() - target.getTime())).toBeLessThan(50);
    await eventually(() => b.offsetMs === set.offsetMs);
    expect((await readSharedClock(connect(), prefix)).offsetMs).toBe(set.offsetMs);
  });

  it('a clock started later begins at the stored offset (a restarted rig keeps its service time)', async () => {
    const prefix = newPrefix();
    await moveSharedClock(connect(), prefix, { advanceMs: 8 * DAY });
    expect((await startClock(prefix)).offsetMs).toBe(8 * DAY);
  });

  it('only moves forward: a zero advance, a set before the service time or the wall clock, and > 100 years are refused and change nothing', async () => {
    const prefix = newPrefix();
    const clock = await startClock(prefix);
    await moveSharedClock(connect(), prefix, { advanceMs: 10 * DAY });
    await eventually(() => clock.offsetMs === 10 * DAY);
    await expect(moveSharedClock(connect(), prefix, { advanceMs: 0 })).rejects.toBeInstanceOf(ClockMoveRefused);
    await expect(moveSharedClock(connect(), prefix, { advanceMs: -DAY })).rejects.toBeInstanceOf(ClockMoveRefused);
    await expect(moveSharedClock(connect(), prefix, { setTo: new Date(Date.now() + 5 * DAY) })).rejects.toThrow(/only moves forward.*already/);
    await expect(moveSharedClock(connect(), prefix, { setTo: new Date(Date.now() - DAY) })).rejects.toThrow(/before the wall clock/);
    await expect(moveSharedClock(connect(), prefix, { advanceMs: 101 * 365 * DAY })).rejects.toThrow(/100 years/);
    expect((await readSharedClock(connect(), prefix)).offsetMs).toBe(10 * DAY);
    expect(clock.offsetMs).toBe(10 * DAY);
  });

  it('a process that missed the message catches up on its re-read, and never goes back', async () => {
    const prefix = newPrefix();
    const clock = await startClock(prefix);
    // Written without a message (as if published while this process was disconnected).
    await connect().set(sharedClockKeys(prefix).offset, String(3 * DAY));
    await clock.resync();
    expect(clock.offsetMs).toBe(3 * DAY);
    // A smaller value (a stale message or a reset key) does not move this process's time back.
    await connect().publish(sharedClockKeys(prefix).channel, String(DAY));
    await connect().set(sharedClockKeys(prefix).offset, String(DAY));
    await clock.resync();
    expect(clock.offsetMs).toBe(3 * DAY);
  });

  it('counts only live processes: a closed clock stops counting', async () => {
    const prefix = newPrefix();
    const clock = await startClock(prefix);
    expect(await manualClockProcesses(connect(), prefix)).toBe(1);
    await clock.close();
    clocks.splice(clocks.indexOf(clock), 1);
    const redis = connect();
    const deadline = Date.now() + 2_000;
    while ((await manualClockProcesses(redis, prefix)) !== 0) {
      if (Date.now() > deadline) throw new Error('the closed clock still counts');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  });
});
