import { type KeyListFilter, parseKeyFilters } from '../domain/key-filters.js';
import { type KeyFilter, listKeys } from '../store/keys.js';
import type { Key } from '../domain/key.js';
import type { Caller, ServiceDeps } from './context.js';
import { visibleInstanceIds } from './permissions.js';

export interface KeyPage {
  items: Key[];
  total: number;
}

/**
 * ListKeys: keys in creation order, one page at a time, narrowed by `Filters` (§3.1). A
 * key-user limited to some instances sees only their keys, never default keys.
 * @throws InvalidParameter(Filters)
 */
export async function pageKeys(
  deps: ServiceDeps,
  input: { pageNumber: number; pageSize: number; filters?: string | undefined },
  caller: Caller,
): Promise<KeyPage> {
  const requested: KeyListFilter = input.filters ? parseKeyFilters(input.filters) : {};
  // Every key here is user-created: a CreatorType filter without `User` matches nothing.
  if (requested.creatorTypes && !requested.creatorTypes.includes('User')) return { items: [], total: 0 };

  const visible = visibleInstanceIds(caller);
  let instanceIds = requested.instanceIds;
  if (visible) instanceIds = (instanceIds ?? [...visible]).filter((id) => visible.includes(id));
  // An empty list would mean "no condition" to the store: nothing is visible, say so here.
  if (instanceIds && instanceIds.length === 0) return { items: [], total: 0 };

  const filter: KeyFilter = {
    ...(requested.states ? { states: requested.states } : {}),
    ...(requested.specs ? { specs: requested.specs } : {}),
    ...(requested.usages ? { usages: requested.usages } : {}),
    ...(requested.protectionLevels ? { protectionLevels: requested.protectionLevels } : {}),
    ...(instanceIds ? { instanceIds } : {}),
  };
  return listKeys(deps.db, filter, { offset: (input.pageNumber - 1) * input.pageSize, limit: input.pageSize });
}
