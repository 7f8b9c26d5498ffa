/**
 * The reconciler (DESIGN.md, Crash consistency): Postgres and the HSM are written in two
 * steps (a version's row, then its token object, then the commit), so a crash or a failed
 * commit can leave an object no committed row names, and a lost token file or a foreign
 * C_DestroyObject can leave a row whose object is gone. The reconciler compares the two.
 *
 * The rule:
 * - An **orphan** is a UUID-named version key (a secret key, or the private half of an
 *   asymmetric version's pair: CKA_UNWRAP=false) or wrapping pair (a private half with
 *   CKA_UNWRAP=true) in the token that no committed row references: no `token` version holding material has its
 *   id (a version row without committed material means the object is what an import that
 *   crashed before its commit left — ImportKeyMaterial destroys the same leftover), or no
 *   `wrapping_keys` row has it. It is destroyed only when consecutive reconciler runs found it
 *   orphaned over at least `RECONCILE_GRACE_MS` of service time (the first sighting is
 *   recorded in `reconcile_findings`; a run that finds it referenced, or gone, forgets it),
 *   and a last look at Postgres right before the destroy still finds no row. A creation or an
 *   import in flight holds its object for the milliseconds between C_GenerateKey / C_UnwrapKey
 *   and its commit, so it is never destroyed: its row is committed long before the second
 *   sighting. (The grace period is service time: on a rig whose time machine jumps, the two
 *   sightings still have to be two separate runs.)
 * - A **missing object** is a row that needs one — a `token` version holding material, or any
 *   wrapping pair — whose object the token does not have. Under the same two-sightings rule it
 *   is **flagged**: a warning log line with the ids and a `flagged_at` in `reconcile_findings`
 *   (counted by `countFlaggedFindings`, for the metrics). The row is never deleted: a flagged
 *   key is for an operator to look at (a restored token backup may bring the object back, and
 *   the finding then goes away by itself).
 * - **Pooled wrapping pairs of the other KMS_IMPORT_STRICT setting** are retired first, row and
 *   object (services/wrapping-keys.ts `retireOtherModePooledPairs`): no take of this mode would
 *   ever use them, and strict mode wants no pair that may decrypt with raw RSA. (During a
 *   rolling change of the setting, processes of the two modes retire each other's pools; the
 *   pool refills.)
 * - Never touched: the service's own keys (root key, import-token MAC key: `hsm-kms:…` ids)
 *   and anything whose CKA_ID is not a UUID (other applications sharing the token). Every
 *   UUID-named key is taken as this deployment's: a token serves one database (README).
 *
 * Order within a run: Postgres is read before and after the token listing. An object is an
 * orphan only if the *later* read has no row for it (a row committed during the listing
 * counts); a row misses its object only if the *earlier* read had it (its object was created
 * before its commit, hence before the listing) and the later read still has it (a deletion in
 * flight removes the row right after the object).
 */
import type { Logger } from 'pino';
import { withTransaction } from '../store/db.js';
import {
  type Finding,
  type FindingKind,
  deleteFinding,
  isObjectReferenced,
  listFindings,
  lockReconciler,
  markFindingFlagged,
  readReferencedObjects,
  recordFinding,
} from '../store/reconcile-findings.js';
import type { ServiceDeps } from './context.js';
import { retireOtherModePooledPairs } from './wrapping-keys.js';

/** How long, in service time, a mismatch must persist over consecutive runs before it is acted on. */
export const RECONCILE_GRACE_MS = 10 * 60_000;

export interface ReconcileResult {
  /** Pooled wrapping pairs of the other KMS_IMPORT_STRICT setting, retired (row and object) in this run. */
  retiredPairs: string[];
  /** Orphan objects destroyed in this run, by id. */
  destroyed: Array<{ kind: FindingKind; objectId: string }>;
  /** Rows flagged in this run (their object is missing). */
  flagged: Array<{ kind: FindingKind; objectId: string; keyId: string | null }>;
  /** Mismatches seen but not yet acted on (first sighting, or within the grace period). */
  suspected: number;
  /** Rows flagged in this or an earlier run whose object is still missing. */
  flaggedTotal: number;
}

interface Mismatch {
  kind: FindingKind;
  objectId: string;
  keyId: string | null;
}

export interface ReconcileOptions {
  graceMs?: number;
}

export async function reconcileHsmObjects(deps: ServiceDeps, options: ReconcileOptions = {}): Promise<ReconcileResult> {
  const graceMs = options.graceMs ?? RECONCILE_GRACE_MS;
  const retiredPairs = await retireOtherModePooledPairs(deps);
  const before = await readReferencedObjects(deps.db);
  const objects = await deps.hsm.listObjectIds();
  const after = await readReferencedObjects(deps.db);
  const versionKeys = new Set(objects.versionKeys);
  const privateKeys = new Set(objects.wrappingPairs);

  const mismatches: Mismatch[] = [
    ...objects.versionKeys.filter((id) => !after.versionKeysExpected.has(id)).map((id) => ({ kind: 'orphan-version-key' as const, objectId: id, keyId: null })),
    ...objects.wrappingPairs.filter((id) => !after.wrappingPairs.has(id)).map((id) => ({ kind: 'orphan-wrapping-pair' as const, objectId: id, keyId: null })),
    ...[...before.versionKeysExpected]
      .filter(([id]) => !versionKeys.has(id) && after.versionKeysExpected.has(id))
      .map(([id, keyId]) => ({ kind: 'missing-version-key' as const, objectId: id, keyId })),
    ...[...before.wrappingPairs]
      .filter(([id]) => !privateKeys.has(id) && after.wrappingPairs.has(id))
      .map(([id, keyId]) => ({ kind: 'missing-wrapping-pair' as const, objectId: id, keyId })),
  ];

  const now = deps.clock.now();
  return withTransaction(
    deps.db,
    async (tx) => {
      // One run at a time: two workers' runs would each count the other's sighting.
      await lockReconciler(tx);
      const previous = new Map((await listFindings(tx)).map((f) => [findingKey(f), f]));
      const result: ReconcileResult = { retiredPairs, destroyed: [], flagged: [], suspected: 0, flaggedTotal: 0 };
      for (const mismatch of mismatches) {
        const seen = previous.get(findingKey(mismatch));
        previous.delete(findingKey(mismatch));
        const confirmed = seen !== undefined && now.getTime() - seen.firstSeenAt.getTime() >= graceMs;
        if (!confirmed) {
          await recordFinding(tx, mismatch, now);
          result.suspected++;
          continue;
        }
        if (mismatch.kind === 'orphan-version-key' || mismatch.kind === 'orphan-wrapping-pair') {
          if (await isObjectReferenced(tx, mismatch.kind, mismatch.objectId)) {
            await deleteFinding(tx, mismatch.kind, mismatch.objectId);
            continue;
          }
          if (mismatch.kind === 'orphan-version-key') await deps.hsm.destroyVersionKey(mismatch.objectId);
          else await deps.hsm.destroyWrappingKeyPair(mismatch.objectId);
          await deleteFinding(tx, mismatch.kind, mismatch.objectId);
          result.destroyed.push({ kind: mismatch.kind, objectId: mismatch.objectId });
          deps.logger.info({ kind: mismatch.kind, objectId: mismatch.objectId }, 'reconciler destroyed an HSM object no committed row references');
          continue;
        }
        await recordFinding(tx, mismatch, now);
        result.flaggedTotal++;
        if (seen.flaggedAt === null) {
          await markFindingFlagged(tx, mismatch.kind, mismatch.objectId, now);
          result.flagged.push(mismatch);
          logMissing(deps.logger, mismatch);
        }
      }
      // What no longer mismatches (committed after all, restored, deleted) is forgotten.
      for (const resolved of previous.values()) await deleteFinding(tx, resolved.kind, resolved.objectId);
      return result;
    },
    { rerunOnConflict: false },
  );
}

const findingKey = (f: Pick<Finding, 'kind' | 'objectId'>) => `${f.kind}/${f.objectId}`;

function logMissing(logger: Logger, m: Mismatch): void {
  const what = m.kind === 'missing-version-key' ? { keyId: m.keyId, versionId: m.objectId } : { keyId: m.keyId, wrappingKeyId: m.objectId };
  logger.warn({ finding: m.kind, ...what }, 'reconciler: a committed row names an HSM object the token does not hold (row kept, flagged for an operator)');
}
