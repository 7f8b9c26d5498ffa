/**
 * Key lifecycle use cases: EnableKey, DisableKey, ScheduleKeyDeletion, CancelKeyDeletion,
 * SetDeletionProtection and UpdateKeyDescription. Every one runs the same way: in one
 * transaction, lock the key row, ask the key policy (domain/key.ts `stateAfter`, which
 * applies the §5.1 matrix) where the key goes, then write with a conditional update on the
 * state just read. Two racing transitions therefore never interleave: the second waits for
 * the lock and is judged on the state the first left behind.
 */
import { deletionProtected, invalidParameter, missingParameter, stateModifiedFailed } from '../domain/errors.js';
import { parseKeyReference } from '../domain/ids.js';
import { assertDeletionCancellable } from '../domain/key-deletion.js';
import { type KeyAction, type KeyState, stateAfter } from '../domain/key.js';
import { rotationAfterTransition } from '../domain/rotation-status.js';
import { recordAudit } from '../store/audit.js';
import { type Queryable, withTransaction } from '../store/db.js';
import { updateKey } from '../store/keys.js';
import type { Key } from '../domain/key.js';
import { getVersion } from '../store/versions.js';
import type { Caller, ServiceDeps } from './context.js';
import { scheduleBestEffort } from './jobs-port.js';
import { loadKey } from './key-lookup.js';
import { assertAdmin } from './permissions.js';
import { scheduleNextRotation } from './rotation-schedule.js';

const DAY_MS = 86_400_000;

/** Bounds of `PendingWindowInDays` (alibaba-api.md §3.1, §5.5: 7–366 in the current API). */
export const MIN_PENDING_WINDOW_DAYS = 7;
export const MAX_PENDING_WINDOW_DAYS = 366;

type KeyChanges = Partial<Omit<Key, 'id' | 'createdAt' | 'updatedAt'>>;

interface Transition {
  action: KeyAction;
  /** Extra checks and field changes, decided on the locked row (after the state check). */
  changes?: (key: Key, next: KeyState) => KeyChanges;
  audit?: Record<string, unknown>;
}

/**
 * Whether the key holds usable material: always for generated keys; for BYOK keys, whether
 * the primary version's material is imported (it is gone again after DeleteKeyMaterial or
 * expiry). CancelKeyDeletion needs it to choose Enabled or PendingImport.
 */
async function hasMaterial(db: Queryable, key: Key): Promise<boolean> {
  if (key.origin !== 'EXTERNAL') return true;
  if (!key.primaryVersionId) return false;
  return (await getVersion(db, key.primaryVersionId))?.hasMaterial ?? false;
}

async function transition(deps: ServiceDeps, reference: string, caller: Caller, t: Transition): Promise<Key> {
  assertAdmin(caller);
  return withTransaction(deps.db, async (tx) => {
    const key = await loadKey(deps, tx, reference, caller, { forUpdate: true });
    const next = stateAfter(t.action, { state: key.state, hasMaterial: await hasMaterial(tx, key) });
    const changes: KeyChanges = {
      ...t.changes?.(key, next),
      state: next,
      automaticRotation: rotationAfterTransition(key.automaticRotation, next),
    };
    // Conditional on the state read under the lock: a row that moved anyway matches nothing.
    const updated = await updateKey(tx, key.id, changes, key.state);
    if (!updated) throw stateModifiedFailed();
    await recordAudit(tx, {
      requestId: caller.requestId,
      accessKeyId: caller.accessKeyId,
      sourceIp: caller.sourceIp,
      action: t.action,
      keyId: key.id,
      detail: { from: key.state, to: next, ...t.audit },
    });
    return updated;
  });
}

/**
 * EnableKey: Enabled or Disabled → Enabled.
 * @throws Forbidden.KeyNotFound / Forbidden.AliasNotFound (404), Forbidden.NoPermission (403),
 *   Rejected.StateModifiedFailed (409) in PendingDeletion or PendingImport.
 */
export async function enableKey(deps: ServiceDeps, reference: string, caller: Caller): Promise<Key> {
  const key = await transition(deps, reference, caller, { action: 'EnableKey' });
  // Seed 002: rotation resumes; one that fell due while suspended runs once, now.
  await scheduleNextRotation(deps, key);
  return key;
}

/**
 * DisableKey: Enabled or Disabled → Disabled; automatic rotation is suspended meanwhile (§5.4).
 * @throws Forbidden.KeyNotFound / Forbidden.AliasNotFound (404), Forbidden.NoPermission (403),
 *   Rejected.StateModifiedFailed (409) in PendingDeletion or PendingImport.
 */
export function disableKey(deps: ServiceDeps, reference: string, caller: Caller): Promise<Key> {
  return transition(deps, reference, caller, { action: 'DisableKey' });
}

/**
 * ScheduleKeyDeletion: → PendingDeletion with `DeleteDate = now + days` (§5.5). Refused while
 * deletion protection is on (§5.1).
 * @throws InvalidParameter(PendingWindowInDays) outside 7–366, Forbidden.DeletionProtection
 *   (403), Rejected.StateModifiedFailed (409) when already PendingDeletion, plus the lookup
 *   and permission errors.
 */
export async function scheduleKeyDeletion(deps: ServiceDeps, reference: string, pendingWindowInDays: number, caller: Caller): Promise<Key> {
  if (!Number.isInteger(pendingWindowInDays) || pendingWindowInDays < MIN_PENDING_WINDOW_DAYS || pendingWindowInDays > MAX_PENDING_WINDOW_DAYS) {
    throw invalidParameter('PendingWindowInDays', `It must be between ${MIN_PENDING_WINDOW_DAYS} and ${MAX_PENDING_WINDOW_DAYS}.`);
  }
  const key = await transition(deps, reference, caller, {
    action: 'ScheduleKeyDeletion',
    changes: (key) => {
      if (key.deletionProtection) throw deletionProtected();
      return { deleteDate: new Date(deps.clock.now().getTime() + pendingWindowInDays * DAY_MS) };
    },
    audit: { pendingWindowInDays },
  });
  // After the commit: the delayed job at DeleteDate (services/key-deletion.ts); the sweeper
  // deletes the key anyway if Redis loses it.
  const deleteAt = key.deleteDate;
  if (deleteAt) await scheduleBestEffort(deps, 'key deletion', () => deps.jobs.scheduleKeyDeletion(key.id, deleteAt));
  return key;
}

/**
 * CancelKeyDeletion: PendingDeletion → Enabled, or PendingImport for a BYOK key without
 * material (domain/key.ts `stateAfter`); the DeleteDate is cleared.
 * Refused once the DeleteDate has passed (the deletion may be half done: services/key-deletion.ts).
 * @throws Rejected.StateModifiedFailed (409) in any other state or past the DeleteDate, plus
 *   the lookup and permission errors.
 */
export async function cancelKeyDeletion(deps: ServiceDeps, reference: string, caller: Caller): Promise<Key> {
  const key = await transition(deps, reference, caller, {
    action: 'CancelKeyDeletion',
    changes: (current) => {
      // Past its DeleteDate the key may already be half-destroyed by a deletion that will resume.
      assertDeletionCancellable(current, deps.clock.now());
      return { deleteDate: null };
    },
  });
  // Seed 002: rotation resumes; one that fell due while suspended runs once, now.
  await scheduleNextRotation(deps, key);
  return key;
}

export interface DeletionProtectionInput {
  enable: boolean;
  /** `KeyId` (id, alias or ARN). */
  keyId?: string | undefined;
  /** `ProtectedResourceArn`: the key's ARN (older API versions name the key only this way). */
  protectedResourceArn?: string | undefined;
  description?: string | undefined;
}

/**
 * SetDeletionProtection. The key is named by `KeyId`, `ProtectedResourceArn` (a key ARN), or
 * both when they agree. Turning protection off clears its description.
 * @throws MissingParameter(ProtectedResourceArn) when neither is given, InvalidParameter when
 *   the ARN is not a key ARN or names another key than KeyId, Rejected.PendingDeletion (409),
 *   plus the lookup and permission errors.
 */
export async function setDeletionProtection(deps: ServiceDeps, input: DeletionProtectionInput, caller: Caller): Promise<Key> {
  const reference = protectedKeyReference(input);
  return transition(deps, reference, caller, {
    action: 'SetDeletionProtection',
    changes: (key) => {
      if (input.keyId !== undefined && input.protectedResourceArn !== undefined) {
        // Both given: the ARN must name the key KeyId resolved to.
        const fromArn = parseKeyReference(input.protectedResourceArn);
        if (fromArn.kind !== 'id' || fromArn.keyId !== key.id) {
          throw invalidParameter('ProtectedResourceArn', 'It names another key than KeyId.');
        }
      }
      return {
        deletionProtection: input.enable,
        deletionProtectionDescription: input.enable ? (input.description ?? '') : '',
      };
    },
    audit: { deletionProtection: input.enable },
  });
}

function protectedKeyReference(input: DeletionProtectionInput): string {
  if (input.protectedResourceArn !== undefined) {
    const ref = parseKeyReference(input.protectedResourceArn);
    if (!ref.arn || ref.kind !== 'id') {
      throw invalidParameter('ProtectedResourceArn', 'It must be a key ARN: acs:kms:REGION:ACCOUNT:key/KEY_ID.');
    }
  }
  const reference = input.keyId ?? input.protectedResourceArn;
  // Older docs mark ProtectedResourceArn required; newer ones accept KeyId instead (§3.1).
  if (reference === undefined) throw missingParameter('ProtectedResourceArn');
  return reference;
}

/**
 * UpdateKeyDescription (allowed in every state but PendingDeletion, §5.1).
 * @throws Rejected.PendingDeletion (409), plus the lookup and permission errors.
 */
export function updateKeyDescription(deps: ServiceDeps, reference: string, description: string, caller: Caller): Promise<Key> {
  return transition(deps, reference, caller, { action: 'UpdateKeyDescription', changes: () => ({ description }) });
}
