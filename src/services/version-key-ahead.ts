/**
 * A token version key made ahead of the transaction that commits its row (issue 19): the HSM
 * call — milliseconds for AES, up to seconds for an RSA pair under load — never runs inside a
 * transaction, so no row lock (instance quota, key) and no pool connection is held across it,
 * and a connection that dies meanwhile has nothing open.
 *
 * Crash consistency (DESIGN.md): the object is created with the version id as CKA_ID, then the
 * row commits. What a failure leaves:
 * - the transaction certainly did not commit (refusal, conflict, store gone before COMMIT):
 *   the object is destroyed here, best effort;
 * - the COMMIT's answer was lost, the destroy failed, or the process died: the object stays
 *   until the reconciler (services/reconciler.ts) finds no committed row for it over its
 *   grace period and destroys it. A committed row keeps its object.
 */
import type { VersionKeySpec } from '../hsm/hsm.js';
import { certainlyRolledBack } from '../store/db.js';
import type { ServiceDeps } from './context.js';

export interface VersionKeyAhead {
  versionId: string;
  spec: VersionKeySpec;
}

/**
 * Generates `ahead` (when given) in the token, then runs `commit` (one withTransaction).
 * `commit` returns its result and whether the committed row uses the object; an unused one
 * is destroyed.
 */
export async function commitWithVersionKeyAhead<T>(
  deps: ServiceDeps,
  ahead: VersionKeyAhead | undefined,
  commit: () => Promise<{ result: T; usedAhead: boolean }>,
): Promise<T> {
  if (ahead) await deps.hsm.generateVersionKey(ahead.versionId, ahead.spec);
  let outcome: { result: T; usedAhead: boolean };
  try {
    outcome = await commit();
  } catch (error) {
    if (ahead && certainlyRolledBack(error)) await destroyQuietly(deps, ahead.versionId);
    throw error;
  }
  if (ahead && !outcome.usedAhead) await destroyQuietly(deps, ahead.versionId);
  return outcome.result;
}

/** A destroy that fails leaves the object to the reconciler; the caller's answer stands. */
async function destroyQuietly(deps: ServiceDeps, versionId: string): Promise<void> {
  await deps.hsm.destroyVersionKey(versionId).catch((error: unknown) => {
    deps.logger.warn({ versionId, err: error instanceof Error ? error.message : String(error) }, 'an uncommitted version key stays in the token for the reconciler');
  });
}
