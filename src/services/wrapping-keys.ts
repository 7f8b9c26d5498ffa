import { randomUUID } from 'node:crypto';
import type { Queryable } from '../store/db.js';
import { withTransaction } from '../store/db.js';
import {
  type WrappingKey,
  type WrappingKeyIssue,
  countPooledWrappingKeys,
  deleteWrappingKey,
  insertWrappingKey,
  listExpiredWrappingKeys,
  takePooledWrappingKey,
} from '../store/wrapping-keys.js';
import type { ServiceDeps } from './context.js';

/**
 * BYOK wrapping key pairs (seed 000, step 2): RSA-2048, generated in the HSM, private half
 * sensitive and non-extractable. Generation takes 200–400 ms on SoftHSM2, so a small pool of
 * pre-generated pairs (KMS_WRAPPING_KEY_POOL_SIZE) lets GetParametersForImport answer in
 * milliseconds; the pool is refilled by a job after each take and at worker start.
 */

/**
 * Whether pairs may C_Decrypt with raw RSA: only when the host OAEP fallback is allowed
 * (not strict), because that fallback is the only use of it (DESIGN.md, capability gap).
 */
const rawDecryptMode = (deps: Pick<ServiceDeps, 'config'>): boolean => !deps.config.hsm.importStrict;

export interface IssuedWrappingKey {
  wrappingKey: WrappingKey;
  /** True when the pair came from the pool (the caller then asks for a refill). */
  pooled: boolean;
}

/**
 * Issues a pair for one import token: the oldest pooled pair if there is one, otherwise a
 * pair generated inline. `finish` runs in the transaction that issues the pair (it records
 * the token and the audit event), so an issue either fully happens or not at all; an inline
 * pair whose transaction fails is destroyed again.
 */
export async function issueWrappingKey<T>(
  deps: ServiceDeps,
  issue: WrappingKeyIssue,
  finish: (tx: Queryable, issued: IssuedWrappingKey) => Promise<T>,
): Promise<T> {
  const rawDecrypt = rawDecryptMode(deps);
  const fromPool = await withTransaction(deps.db, async (tx) => {
    const wrappingKey = await takePooledWrappingKey(tx, rawDecrypt, issue);
    return wrappingKey ? { result: await finish(tx, { wrappingKey, pooled: true }) } : undefined;
  });
  if (fromPool) return fromPool.result;

  // Empty pool: generate outside any transaction (a 300 ms RSA generation must not hold one;
  // PGlite serialises transactions), then record it as issued.
  const pair = await generatePair(deps);
  try {
    return await withTransaction(deps.db, async (tx) => {
      const wrappingKey = await insertWrappingKey(tx, { ...pair, rawDecrypt, createdAt: deps.clock.now() }, issue);
      return finish(tx, { wrappingKey, pooled: false });
    });
  } catch (error) {
    await deps.hsm.destroyWrappingKeyPair(pair.id).catch(() => undefined);
    throw error;
  }
}

/**
 * Generates pairs until the pool of the current mode holds `config.hsm.wrappingKeyPoolSize`.
 * Two refills racing may overshoot by a few pairs; the extra ones are simply used later.
 * Returns how many pairs were added.
 */
export async function refillWrappingKeyPool(deps: ServiceDeps): Promise<number> {
  const rawDecrypt = rawDecryptMode(deps);
  const target = deps.config.hsm.wrappingKeyPoolSize;
  let added = 0;
  for (let have = await countPooledWrappingKeys(deps.db, rawDecrypt); have < target; have++) {
    const pair = await generatePair(deps);
    try {
      await insertWrappingKey(deps.db, { ...pair, rawDecrypt, createdAt: deps.clock.now() });
    } catch (error) {
      await deps.hsm.destroyWrappingKeyPair(pair.id).catch(() => undefined);
      throw error;
    }
    added++;
  }
  return added;
}

/**
 * Destroys, in the HSM, the pairs whose import token has expired, then deletes their rows
 * (and token records). The HSM object goes first: a crash in between leaves a row whose
 * object is gone, which the next run deletes; never an object nobody can find.
 * One failing pair does not stop the batch. Returns how many were removed.
 */
export async function destroyExpiredWrappingKeys(deps: ServiceDeps, limit = 100): Promise<number> {
  const expired = await listExpiredWrappingKeys(deps.db, deps.clock.now(), limit);
  let removed = 0;
  for (const wrappingKey of expired) {
    try {
      await deps.hsm.destroyWrappingKeyPair(wrappingKey.id);
      if (await deleteWrappingKey(deps.db, wrappingKey.id)) removed++;
    } catch (error) {
      deps.logger.warn({ wrappingKeyId: wrappingKey.id, err: error instanceof Error ? error.message : String(error) }, 'expired wrapping key not removed');
    }
  }
  return removed;
}

/**
 * Retires the pooled pairs generated under the other KMS_IMPORT_STRICT setting (the
 * reconciler's part): no take will ever hand them out (takes match the current mode), and a
 * pair that may C_Decrypt with raw RSA has no place in a token run in strict mode. Each goes in
 * one transaction: its row is claimed (deleted) first, then its private half destroyed, then
 * the commit — a crash before the commit leaves the row for the next run (destroying an object
 * already gone does nothing); a failed commit leaves an orphan for the reconciler. Issued
 * pairs are left to their import token's expiry. Returns the ids retired.
 */
export async function retireOtherModePooledPairs(deps: ServiceDeps, limit = 100): Promise<string[]> {
  const otherMode = !rawDecryptMode(deps);
  const { rows } = await deps.db.query<{ id: string }>('SELECT id FROM wrapping_keys WHERE key_id IS NULL AND raw_decrypt = $1 ORDER BY id LIMIT $2', [
    otherMode,
    limit,
  ]);
  const retired: string[] = [];
  for (const { id } of rows) {
    const claimed = await withTransaction(
      deps.db,
      async (tx) => {
        const { rowCount } = await tx.query('DELETE FROM wrapping_keys WHERE id = $1 AND key_id IS NULL', [id]);
        if (rowCount !== 1) return false;
        await deps.hsm.destroyWrappingKeyPair(id);
        return true;
      },
      { rerunOnConflict: false },
    );
    if (claimed) retired.push(id);
  }
  return retired;
}

async function generatePair(deps: ServiceDeps): Promise<{ id: string; publicKeyDer: Buffer }> {
  const id = randomUUID();
  const { publicKeyDer } = await deps.hsm.generateWrappingKeyPair(id);
  return { id, publicKeyDer };
}
