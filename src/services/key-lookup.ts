import { aliasNotFound, keyNotFound, noPermission } from '../domain/errors.js';
import { parseKeyReference } from '../domain/ids.js';
import { getAlias } from '../store/aliases.js';
import type { Queryable } from '../store/db.js';
import { type Key, getKey } from '../store/keys.js';
import type { Caller, ServiceDeps } from './context.js';
import { visibleInstanceIds } from './permissions.js';

/**
 * Resolves a `KeyId` parameter (id, alias or ARN) to the key id.
 * @throws Forbidden.KeyNotFound / Forbidden.AliasNotFound (404); InvalidParameter for a bad ARN.
 */
export async function resolveKeyId(deps: Pick<ServiceDeps, 'config'>, db: Queryable, reference: string): Promise<string> {
  const ref = parseKeyReference(reference);
  // An ARN names a region and account: one of another account is simply not found here.
  if (ref.arn && (ref.arn.region !== deps.config.region || ref.arn.account !== deps.config.accountId)) {
    throw ref.kind === 'alias' ? aliasNotFound() : keyNotFound();
  }
  if (ref.kind === 'id') return ref.keyId;
  const alias = await getAlias(db, ref.aliasName);
  if (!alias) throw aliasNotFound();
  return alias.keyId;
}

/** Loads the key a reference names and checks the caller may touch it. */
export async function loadKey(
  deps: Pick<ServiceDeps, 'config'>,
  db: Queryable,
  reference: string,
  caller: Caller,
  options: { forUpdate?: boolean } = {},
): Promise<Key> {
  const keyId = await resolveKeyId(deps, db, reference);
  const key = await getKey(db, keyId, options);
  if (!key) throw keyNotFound();
  authorizeKey(caller, key);
  return key;
}

/** A key-user limited to some instances may not touch keys of other instances (or default keys). */
export function authorizeKey(caller: Caller, key: Pick<Key, 'instanceId'>): void {
  const visible = visibleInstanceIds(caller);
  if (visible === null) return;
  if (key.instanceId === null || !visible.includes(key.instanceId)) throw noPermission();
}
