/**
 * Work a transaction does last, just before its COMMIT (withTransaction runs it): the audit
 * trail appends a transaction's events there, so a chain head is locked only for the moment
 * of the append and the commit, never across the use case's HSM calls.
 */
import type pg from 'pg';

type CommitHook = (tx: pg.PoolClient) => Promise<void>;

const open = new WeakMap<object, CommitHook[]>();
/** Hooks added as `final`. */
const finalHooks = new WeakSet<CommitHook>();

/** withTransaction: a transaction began on `tx`. */
export function openCommitHooks(tx: pg.PoolClient): void {
  open.set(tx, []);
}

/** withTransaction: run the hooks, in the order they were added, before COMMIT. */
export async function runCommitHooks(tx: pg.PoolClient): Promise<void> {
  const hooks = open.get(tx) ?? [];
  for (const hook of hooks) if (!finalHooks.has(hook)) await hook(tx);
  for (const hook of hooks) if (finalHooks.has(hook)) await hook(tx);
}

/** withTransaction: the transaction ended (committed or rolled back). */
export function closeCommitHooks(tx: pg.PoolClient): void {
  open.delete(tx);
}

/**
 * Adds `hook` to run before the commit of the transaction open on `tx`, after the hooks added
 * before it; a `final` hook runs after every other one, right before COMMIT. The key quota's
 * instance row lock (store/quota.ts) is final: held only for its statement and the commit, and
 * always taken after the audit chain heads, so the two never deadlock.
 * @returns false when `tx` is not a transaction of withTransaction (the caller does the work now).
 */
export function beforeCommit(tx: unknown, hook: CommitHook, phase: 'in-order' | 'final' = 'in-order'): boolean {
  const hooks = typeof tx === 'object' && tx !== null ? open.get(tx) : undefined;
  if (!hooks) return false;
  if (phase === 'final') finalHooks.add(hook);
  hooks.push(hook);
  return true;
}

/** The transaction open on `tx` (an identity, new for every attempt), if withTransaction opened one. */
export function openTransactionOf(tx: unknown): object | undefined {
  return typeof tx === 'object' && tx !== null ? open.get(tx) : undefined;
}
