import type { Command } from 'commander';
import type { Redis } from 'ioredis';
import type { KmsConfig } from '../../config.js';
// Light: types and arithmetic only. The jobs (bullmq) and ioredis load inside the actions.
import { type ClockMove, type ClockReading, MAX_OFFSET_MS, manualClockProcesses, moveSharedClock, readSharedClock } from '../../shared-offset-clock.js';
import { localConfig } from '../local-kms.js';
import { print } from '../output.js';

/**
 * `kms clock show | set <ISO> | advance <N[d|h|m|s]>`: the time machine of a rig running with
 * KMS_CLOCK=manual (issue 14 §4). It talks to the rig's Redis only (REDIS_URL and
 * KMS_QUEUE_PREFIX, or the running quickstart's runtime.json): the offset is shared there by
 * every process (shared-offset-clock.ts). After a move it promotes the delayed jobs due at the
 * new time and queues one sweep, so the workers do that work at once instead of after the
 * jobs' wall-clock delays or the next repeatable sweep.
 */
export function register(program: Command): void {
  const clock = program
    .command('clock')
    .description('the service clock of a KMS_CLOCK=manual rig (the time machine): show it, or move it forward and run what fell due');
  clock
    .command('show')
    .description('print the service time and its offset from the wall clock')
    .action(async () => withRigRedis(async (redis, config) => print(shown(await readSharedClock(redis, config.jobs.queuePrefix)))));
  clock
    .command('set <time>')
    .description('move the service clock to an ISO-8601 time (never back), then sweep for due work')
    .action(async (time: string) => moveAndSweep({ setTo: parseIsoTime(time) }));
  clock
    .command('advance <duration>')
    .description('move the service clock forward by N[d|h|m|s] (seconds without a unit), then sweep for due work')
    .action(async (duration: string) => moveAndSweep({ advanceMs: parseDuration(duration) }));
}

async function moveAndSweep(move: ClockMove): Promise<void> {
  const [{ systemClock }, { promoteDueJobs }, { requestImmediateSweep }, { createKmsJobs }] = await Promise.all([
    import('../../clock.js'),
    import('../../jobs/due-job-promotion.js'),
    import('../../jobs/immediate-sweep.js'),
    import('../../jobs/queues.js'),
  ]);
  await withRigRedis(async (redis, config) => {
    const moved = await moveSharedClock(redis, config.jobs.queuePrefix, move);
    // The processes have the new offset before any job below runs: it was published (and
    // delivered to their subscriptions) before the first job is touched.
    const jobs = createKmsJobs(config, systemClock);
    try {
      const promoted = await promoteDueJobs(jobs.queues, moved.now);
      const sweepJobId = await requestImmediateSweep(jobs.queues.sweeper);
      print({
        ...shown(moved),
        NotifiedProcesses: moved.notified,
        PromotedJobs: { Rotation: promoted.rotation, KeyDeletion: promoted.keyDeletion, MaterialExpiry: promoted.materialExpiry },
        SweepJobId: sweepJobId,
      });
    } finally {
      await jobs.close();
    }
  });
}

const shown = (reading: ClockReading) => ({ Now: reading.now.toISOString(), OffsetSeconds: reading.offsetMs / 1000 });

/**
 * Opens the rig's Redis, refusing unless a process there runs the manual clock: moving an
 * offset nobody reads would look like it worked. Errors never show REDIS_URL (it may carry a
 * password).
 */
async function withRigRedis(fn: (redis: Redis, config: KmsConfig) => Promise<void>): Promise<void> {
  const config = await localConfig();
  const { Redis } = await import('ioredis');
  const redis = new Redis(config.redisUrl ?? 'redis://127.0.0.1:6379', { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    try {
      await redis.connect();
    } catch (error) {
      throw new Error(`cannot reach the rig's Redis (${error instanceof Error ? error.message : String(error)}): is the quickstart running, or REDIS_URL set?`);
    }
    const prefix = config.jobs.queuePrefix;
    if ((await manualClockProcesses(redis, prefix)) === 0) {
      throw new Error(
        `no process on this Redis (queue prefix "${prefix}") runs KMS_CLOCK=manual; the time machine needs a rig started with it: KMS_CLOCK=manual npm run quickstart`,
      );
    }
    await fn(redis, config);
  } finally {
    redis.disconnect();
  }
}

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 } as const;

/** `30d`, `12h`, `90m`, `45s`, `45` (seconds): a positive whole number of units. */
export function parseDuration(text: string): number {
  const match = /^(\d{1,12})([dhms]?)$/.exec(text.trim());
  const amount = Number(match?.[1]);
  if (!match || amount <= 0) throw new Error(`"${text}" is not a duration: a positive integer followed by d, h, m or s, e.g. 30d`);
  const ms = amount * UNIT_MS[(match[2] || 's') as keyof typeof UNIT_MS];
  if (ms > MAX_OFFSET_MS) throw new Error(`"${text}" is too far: the service clock may run at most 100 years ahead of the wall clock`);
  return ms;
}

/** A full ISO-8601 date, e.g. 2027-01-01T00:00:00Z (a bare date means its UTC midnight). */
export function parseIsoTime(text: string): Date {
  const time = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(time)) throw new Error(`"${text}" is not an ISO-8601 time, e.g. 2027-01-01T00:00:00Z`);
  return new Date(time);
}
