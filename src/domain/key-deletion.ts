/**
 * Key deletion at DeleteDate (alibaba-api.md §3.1, §5.5): ScheduleKeyDeletion sets a
 * DeleteDate; when it comes, KMS deletes the key, its versions and their material for good.
 * Pure rules; services/key-deletion.ts applies them.
 */
import { KmsError } from './errors.js';
import type { Key } from './key.js';

/** What one deletion attempt found. */
export type KeyDeletionOutcome =
  /** The key, its versions, aliases, tags and HSM objects are gone. */
  | 'deleted'
  /** Still PendingDeletion with this DeleteDate, but the DeleteDate is ahead of the service clock. */
  | 'not-due'
  /** Nothing to do: the key is gone, the deletion was cancelled, or it was re-scheduled to another date. */
  | 'stale';

/** Whether a deletion scheduled for `expectedDeleteAt` applies to `key` at `now`. */
export function keyDeletionDue(key: Pick<Key, 'state' | 'deleteDate'> | undefined, expectedDeleteAt: Date, now: Date): KeyDeletionOutcome | 'due' {
  if (!key || key.state !== 'PendingDeletion' || key.deleteDate?.getTime() !== expectedDeleteAt.getTime()) return 'stale';
  return key.deleteDate.getTime() <= now.getTime() ? 'due' : 'not-due';
}

/**
 * Once its DeleteDate has passed a key is being deleted: its HSM objects may already be gone
 * (a deletion that crashed half-way resumes from the row), so CancelKeyDeletion can no longer
 * bring it back. Until then it can.
 * @throws Rejected.StateModifiedFailed (409)
 */
export function assertDeletionCancellable(key: Pick<Key, 'state' | 'deleteDate'>, now: Date): void {
  if (key.state === 'PendingDeletion' && key.deleteDate !== null && key.deleteDate.getTime() <= now.getTime()) {
    throw new KmsError('Rejected.StateModifiedFailed', 'Keystate modified failed. The key is past its DeleteDate and is being deleted.');
  }
}
