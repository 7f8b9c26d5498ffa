import { isAliasReference } from '../domain/alias.js';
import { aliasNotFound, keyNotFound } from '../domain/errors.js';
import { parseKeyReference } from '../domain/ids.js';
import { getAlias } from '../store/aliases.js';
import type { Queryable } from '../store/db.js';
import { getKey } from '../store/keys.js';
import type { Key } from '../domain/key.js';
import type { Caller, ServiceDeps } from './context.js';
import type { Alias } from '../store/aliases.js';
import { visibleInstanceIds } from './permissions.js';

/**
 * Resolves a `KeyId` parameter (id, alias or ARN) to the key id.
 * @throws Forbidden.KeyNotFound / Forbidden.AliasNotFound (404); InvalidParameter for a bad ARN.
 */
export async function resolveKeyId(deps: Pick<ServiceDeps, 'config'>, db: Queryable, reference: string): Promise<string> {
  return resolveWith(deps, reference, (name) => getAlias(db, name));
}

async function resolveWith(
  deps: Pick<ServiceDeps, 'config'>,
  reference: string,
  aliasNamed: (name: string) => Promise<Alias | undefined>,
): Promise<string> {
  const ref = parseKeyReference(reference);
  // An ARN names a region and account: one of another account is simply not found here.
  if (ref.arn && (ref.arn.region !== deps.config.region || ref.arn.account !== deps.config.accountId)) {
    throw ref.kind === 'alias' ? aliasNotFound() : keyNotFound();
  }
  if (ref.kind === 'id') return ref.keyId;
  const alias = await aliasNamed(ref.aliasName);
  if (!alias) throw aliasNotFound();
  return alias.keyId;
}

/**
 * Loads the key a reference names and checks the caller may touch it. A key the caller may
 * not see is answered exactly as a missing one (issue 13): a key-user limited to instance X
 * must not learn, from a 403 against a 404, which key ids or aliases exist in instance Y.
 * @throws Forbidden.AliasNotFound (404) for an alias (or alias ARN), Forbidden.KeyNotFound
 *   (404) for a key id (or key ARN): missing, or not visible to the caller alike.
 */
export async function loadKey(
  deps: Pick<ServiceDeps, 'config'>,
  db: Queryable,
  reference: string,
  caller: Caller,
  options: { forUpdate?: boolean } = {},
): Promise<Key> {
  const notFound = isAliasReference(reference) ? aliasNotFound : keyNotFound;
  const keyId = await resolveKeyId(deps, db, reference);
  const key = await getKey(db, keyId, options);
  if (!key || !isKeyVisible(caller, key)) throw notFound();
  noteResolvedKey(caller, key.id);
  return key;
}

/**
 * `loadKey` for reads outside a transaction (every crypto action): through the repositories,
 * so a steady-state request is answered from the cache without a Postgres query.
 * @throws as loadKey
 */
export async function findKey(deps: Pick<ServiceDeps, 'config' | 'repositories'>, reference: string, caller: Caller): Promise<Key> {
  const notFound = isAliasReference(reference) ? aliasNotFound : keyNotFound;
  const keyId = await resolveWith(deps, reference, (name) => deps.repositories.aliases.byName(name));
  const key = await deps.repositories.keys.byId(keyId);
  if (!key || !isKeyVisible(caller, key)) throw notFound();
  noteResolvedKey(caller, key.id);
  return key;
}

/**
 * Whether the caller may see and use a key: a key-user limited to some instances sees only
 * their keys (never default keys); everyone else sees every key.
 */
export function isKeyVisible(caller: Caller, key: Pick<Key, 'instanceId'>): boolean {
  const visible = visibleInstanceIds(caller);
  if (visible === null) return true;
  return key.instanceId !== null && visible.includes(key.instanceId);
}

/**
 * For a key reached by another way than a `KeyId` (a ciphertext's version): one the caller
 * may not see is answered as a missing key.
 * @throws Forbidden.KeyNotFound (404)
 */
export function authorizeKey(caller: Caller, key: Pick<Key, 'id' | 'instanceId'>): void {
  if (!isKeyVisible(caller, key)) throw keyNotFound();
  noteResolvedKey(caller, key.id);
}

/** Caller.resolvedKeyId, on a request's Caller only (the shared systemCaller is never written). */
function noteResolvedKey(caller: Caller, keyId: string): void {
  if (caller.requestId !== undefined) caller.resolvedKeyId = keyId;
}
