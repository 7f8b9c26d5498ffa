/**
 * `kms reset` (issue 18): a test rig back to empty without a restart. In one transaction that
 * holds every key's row lock, the keys' token objects are destroyed first (HSM version keys and
 * pairs, the wrapping pairs issued for keys), then the rows go (keys, versions, aliases, tags,
 * audit and its anchors in the token, reconciler findings; with `everything`, instances and access keys as well, but for the
 * one kept so the rig stays reachable). Destroying an object already gone is a no-op, so a reset
 * that failed half-way is simply run again; the commit drops every node's caches (store/reset.ts).
 */
import { withTransaction } from '../store/db.js';
import { deleteRigState, lockEverythingToReset } from '../store/reset.js';
import type { ServiceDeps } from './context.js';

export interface ResetOptions {
  /** Also instances and access keys. */
  everything?: boolean;
  /** The access key `everything` keeps (the rig's admin credentials). */
  keepAccessKeyId?: string | undefined;
}

export interface ResetResult {
  keys: number;
  versions: number;
  tokenObjects: number;
}

export async function resetRig(deps: ServiceDeps, options: ResetOptions = {}): Promise<ResetResult> {
  const result = await withTransaction(
    deps.db,
    async (tx) => {
      const objects = await lockEverythingToReset(tx);
      let destroyed = 0;
      for (const versionId of objects.tokenVersionIds) if (await deps.hsm.destroyVersionKey(versionId)) destroyed += 1;
      for (const wrappingKeyId of objects.wrappingKeyIds) await deps.hsm.destroyWrappingKeyPair(wrappingKeyId);
      // The trail starts again from genesis: the token's anchors of the old one go with it (a
      // reset whose commit then fails leaves the old trail unanchored, never falsely broken).
      await deps.hsm.clearAuditAnchors();
      await deleteRigState(tx, { everything: options.everything === true, keepAccessKeyId: options.keepAccessKeyId });
      return { objects, destroyed };
    },
    // Not re-run on a conflict: the objects are gone; running the whole reset again is safe.
    { rerunOnConflict: false },
  );
  for (const versionId of result.objects.versionIds) deps.software.forget(versionId);
  return {
    keys: result.objects.keyIds.length,
    versions: result.objects.versionIds.length,
    tokenObjects: result.destroyed + result.objects.wrappingKeyIds.length,
  };
}
