/**
 * Alias use cases (alibaba-api.md §3.5, §5.6): an alias is `alias/…`, unique per region
 * regardless of case (store/aliases.ts, docs/api.md) and bound to exactly one key at a time;
 * a key may have several. Any `KeyId` parameter accepts
 * an alias (services/key-lookup.ts).
 */
import { aliasAlreadyExists, aliasNotFound, limitExceeded } from '../domain/errors.js';
import { validateAliasName } from '../domain/alias.js';
import { assertAllowed } from '../domain/key.js';
import {
  type Alias,
  countAliases,
  deleteAlias as deleteAliasRow,
  getAlias,
  insertAlias,
  listAliases,
  listAliasesOfInstances,
  lockAliasNamespace,
  updateAlias as updateAliasRow,
} from '../store/aliases.js';
import { recordAudit } from '../store/audit.js';
import { withTransaction } from '../store/db.js';
import { getKey } from '../store/keys.js';
import type { Caller, ServiceDeps } from './context.js';
import { findKey, loadKey } from './key-lookup.js';
import { assertAdmin, visibleInstanceIds } from './permissions.js';

/** §5.11: Alibaba's account-level limit is 300 aliases per region. */
export const MAX_ALIASES_PER_REGION = 300;

/**
 * CreateAlias: binds a new alias to a key.
 * @throws InvalidParameter(AliasName), AliasAlreadyExists (400), Rejected.LimitExceeded (400)
 *   past 300 aliases, Rejected.StateModifiedFailed (409) for a PendingDeletion key,
 *   Forbidden.KeyNotFound / Forbidden.AliasNotFound (404), Forbidden.NoPermission (403)
 */
export async function createAlias(deps: ServiceDeps, input: { aliasName: string; keyId: string }, caller: Caller): Promise<Alias> {
  assertAdmin(caller);
  validateAliasName(input.aliasName);
  return withTransaction(deps.db, async (tx) => {
    // The key row is locked so a concurrent ScheduleKeyDeletion cannot slip in between.
    const key = await loadKey(deps, tx, input.keyId, caller, { forUpdate: true });
    assertAllowed('CreateAlias', key.state);
    await lockAliasNamespace(tx);
    if (await getAlias(tx, input.aliasName)) throw aliasAlreadyExists();
    const count = await countAliases(tx);
    if (count >= MAX_ALIASES_PER_REGION) {
      throw limitExceeded(`the region already has ${count} of ${MAX_ALIASES_PER_REGION} aliases`);
    }
    if (!(await insertAlias(tx, input.aliasName, key.id))) throw aliasAlreadyExists();
    await recordAudit(tx, {
      requestId: caller.requestId,
      accessKeyId: caller.accessKeyId,
      sourceIp: caller.sourceIp,
      action: 'CreateAlias',
      keyId: key.id,
      detail: { aliasName: input.aliasName },
    });
    const alias = await getAlias(tx, input.aliasName);
    return alias ?? { name: input.aliasName, keyId: key.id, createdAt: deps.clock.now() };
  });
}

/**
 * UpdateAlias: rebinds an existing alias to another key. §5.1 calls it "special": only the
 * *target* key's state decides (a PendingDeletion target is refused).
 * @throws InvalidParameter(AliasName), Forbidden.AliasNotFound (404) for an unknown alias,
 *   Rejected.StateModifiedFailed (409), Forbidden.KeyNotFound (404), Forbidden.NoPermission (403)
 */
export async function updateAlias(deps: ServiceDeps, input: { aliasName: string; keyId: string }, caller: Caller): Promise<Alias> {
  assertAdmin(caller);
  validateAliasName(input.aliasName);
  return withTransaction(deps.db, async (tx) => {
    const target = await loadKey(deps, tx, input.keyId, caller, { forUpdate: true });
    assertAllowed('UpdateAlias', target.state);
    const previous = await getAlias(tx, input.aliasName);
    if (!previous || !(await updateAliasRow(tx, input.aliasName, target.id))) throw aliasNotFound();
    await recordAudit(tx, {
      requestId: caller.requestId,
      accessKeyId: caller.accessKeyId,
      sourceIp: caller.sourceIp,
      action: 'UpdateAlias',
      keyId: target.id,
      detail: { aliasName: input.aliasName, previousKeyId: previous.keyId },
    });
    return { ...previous, keyId: target.id };
  });
}

/**
 * DeleteAlias: allowed whatever the key's state (§5.1).
 * @throws Forbidden.AliasNotFound (404), Forbidden.NoPermission (403)
 */
export async function deleteAlias(deps: ServiceDeps, aliasName: string, caller: Caller): Promise<void> {
  assertAdmin(caller);
  await withTransaction(deps.db, async (tx) => {
    const alias = await getAlias(tx, aliasName);
    if (!alias) throw aliasNotFound();
    const key = await getKey(tx, alias.keyId);
    if (key) assertAllowed('DeleteAlias', key.state);
    if (!(await deleteAliasRow(tx, aliasName))) throw aliasNotFound();
    await recordAudit(tx, {
      requestId: caller.requestId,
      accessKeyId: caller.accessKeyId,
      sourceIp: caller.sourceIp,
      action: 'DeleteAlias',
      keyId: alias.keyId,
      detail: { aliasName },
    });
  });
}

export interface AliasPage {
  items: Alias[];
  total: number;
}

type Page = { pageNumber: number; pageSize: number };
const window = (page: Page) => ({ offset: (page.pageNumber - 1) * page.pageSize, limit: page.pageSize });

/** ListAliases, in name order; a key-user limited to instances sees only their keys' aliases. */
export async function pageAliases(deps: ServiceDeps, page: Page, caller: Caller): Promise<AliasPage> {
  const visible = visibleInstanceIds(caller);
  if (visible) return listAliasesOfInstances(deps.db, visible, window(page));
  return listAliases(deps.db, window(page));
}

/**
 * ListAliasesByKeyId.
 * @throws Forbidden.KeyNotFound / Forbidden.AliasNotFound (404), also for a key the caller may not see
 */
export async function pageAliasesOfKey(deps: ServiceDeps, reference: string, page: Page, caller: Caller): Promise<AliasPage> {
  const key = await findKey(deps, reference, caller);
  assertAllowed('ListAliasesByKeyId', key.state);
  return listAliases(deps.db, window(page), key.id);
}
