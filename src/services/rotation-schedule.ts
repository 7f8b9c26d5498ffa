import type { Key } from '../domain/key.js';
import type { ServiceDeps } from './context.js';
import { scheduleBestEffort } from './jobs-port.js';

/**
 * After a commit that set or moved a key's NextRotationDate (CreateKey, UpdateRotationPolicy,
 * a rotation) or resumed it (EnableKey, CancelKeyDeletion): the delayed job at that date.
 * A date already past (seed 002: a rotation that fell due while the key was suspended)
 * becomes a job without delay, keyed by the same date, so it rotates once at re-enable. Best
 * effort: Postgres holds the date and the sweeper finds it if Redis loses the job.
 */
export async function scheduleNextRotation(deps: ServiceDeps, key: Pick<Key, 'id' | 'automaticRotation' | 'nextRotationDate'>): Promise<void> {
  const dueAt = key.nextRotationDate;
  if (key.automaticRotation !== 'Enabled' || dueAt === null) return;
  await scheduleBestEffort(deps, 'rotation', () => deps.jobs.scheduleRotation(key.id, dueAt));
}
