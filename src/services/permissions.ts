import { noPermission } from '../domain/errors.js';
import type { Caller } from './context.js';

/**
 * Managing keys, aliases and tags is for admins only. The RPC dispatcher already refuses
 * key-users on `access: 'admin'` actions; services check again so no other transport (CLI,
 * jobs) can skip it.
 * @throws Forbidden.NoPermission (403)
 */
export function assertAdmin(caller: Caller): void {
  if (caller.role !== 'admin') throw noPermission();
}

/**
 * The instances whose keys a caller may see, or null for every key (admins and key-users
 * without an instance list). A limited key-user never sees default keys (key-lookup.ts).
 */
export function visibleInstanceIds(caller: Caller): readonly string[] | null {
  if (caller.role === 'admin' || caller.instanceIds === null) return null;
  return caller.instanceIds;
}
