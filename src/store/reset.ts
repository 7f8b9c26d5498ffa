import { recordChanges } from './change-tracking.js';
import type { Queryable } from './db.js';
import { clearVersionsUsed } from './quota.js';

/** What a reset must take out of the token before its rows go: ids are the objects' CKA_IDs. */
export interface ResetObjects {
  keyIds: string[];
  /** Versions whose key lives in the token (HSM tier). */
  tokenVersionIds: string[];
  /** Every version (their sealed SOFTWARE material is cached per process). */
  versionIds: string[];
  /** Wrapping pairs issued for a key (the unissued pool is kept). */
  wrappingKeyIds: string[];
}

/** Locks every key row and lists the token objects of the keys (inside the reset's transaction). */
export async function lockEverythingToReset(tx: Queryable): Promise<ResetObjects> {
  const keys = await tx.query<{ id: string }>('SELECT id FROM keys ORDER BY id FOR UPDATE');
  const versions = await tx.query<{ id: string; storage: string }>('SELECT id, storage FROM key_versions');
  const wrapping = await tx.query<{ id: string }>('SELECT id FROM wrapping_keys WHERE key_id IS NOT NULL');
  return {
    keyIds: keys.rows.map((r) => r.id),
    tokenVersionIds: versions.rows.filter((r) => r.storage === 'token').map((r) => r.id),
    versionIds: versions.rows.map((r) => r.id),
    wrappingKeyIds: wrapping.rows.map((r) => r.id),
  };
}

/**
 * Deletes the keys and all that hangs on them (versions, aliases, tags, their wrapping pairs and
 * import tokens), the audit trail (chain heads back to genesis) and the reconciler's findings;
 * with `everything`, the instances and every access key but `keepAccessKeyId` too. Every cache
 * of every node is dropped once this commits.
 */
export async function deleteRigState(tx: Queryable, options: { everything: boolean; keepAccessKeyId?: string | undefined }): Promise<void> {
  await tx.query('DELETE FROM wrapping_keys WHERE key_id IS NOT NULL');
  await tx.query('DELETE FROM aliases');
  await tx.query('DELETE FROM key_tags');
  await tx.query('DELETE FROM key_versions');
  await tx.query('DELETE FROM keys');
  await tx.query('DELETE FROM reconcile_findings');
  await clearAuditTrail(tx);
  // After the audit chain heads: the lock order of every version insert (store/quota.ts).
  await clearVersionsUsed(tx);
  if (options.everything) {
    await tx.query('DELETE FROM instances');
    await tx.query('DELETE FROM access_keys WHERE id IS DISTINCT FROM $1', [options.keepAccessKeyId ?? null]);
  }
  recordChanges(tx, { kind: 'everything' });
}

/** The audit trail, whichever shape it has (issue 17 chained it: heads go back to genesis). */
async function clearAuditTrail(tx: Queryable): Promise<void> {
  const { rows } = await tx.query<{ name: string }>(
    `SELECT relname AS name FROM pg_class WHERE relkind = 'r' AND relname IN ('audit_events', 'audit_events_unchained', 'audit_digests', 'audit_chain_heads')
       AND relnamespace = 'public'::regnamespace`,
  );
  const tables = new Set(rows.map((r) => r.name));
  for (const table of ['audit_events', 'audit_events_unchained', 'audit_digests']) {
    if (tables.has(table)) await tx.query(`DELETE FROM ${table}`);
  }
  if (tables.has('audit_chain_heads')) await tx.query(`UPDATE audit_chain_heads SET seq = 0, hash = repeat('0', 64)`);
}
