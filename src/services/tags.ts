/**
 * Tag use cases (alibaba-api.md §3.5, §5.7; seed 000): the per-key actions TagResource,
 * UntagResource and ListResourceTags, and the plural tag API TagResources, UntagResources
 * and ListTagResources. At most 20 tags per key, counting the ones it already has.
 */
import { limitExceeded } from '../domain/errors.js';
import { type KeyAction, assertAllowed } from '../domain/key.js';
import { type TagCursor, decodeTagCursor, encodeTagCursor } from '../domain/page-token.js';
import { MAX_TAGS_PER_KEY, type Tag } from '../domain/tags.js';
import { recordAudit } from '../store/audit.js';
import { withTransaction } from '../store/db.js';
import type { Key } from '../domain/key.js';
import { type KeyTag, deleteAllTags, deleteTags, listTagPairs, listTags, upsertTags } from '../store/tags.js';
import type { Caller, ServiceDeps } from './context.js';
import { findKey, loadKey, resolveKeyId } from './key-lookup.js';
import { assertAdmin, visibleInstanceIds } from './permissions.js';

type Tx = Parameters<Parameters<typeof withTransaction>[1]>[0];

/**
 * Loads and locks the keys `references` name, in key-id order (two requests touching the
 * same keys then lock them in the same order and cannot deadlock), and checks `action` is
 * allowed in each key's state.
 */
async function lockKeys(deps: ServiceDeps, tx: Tx, references: readonly string[], caller: Caller, action: KeyAction): Promise<Key[]> {
  const ids = new Set<string>();
  for (const reference of references) ids.add(await resolveKeyId(deps, tx, reference));
  const keys: Key[] = [];
  for (const id of [...ids].sort()) {
    const key = await loadKey(deps, tx, id, caller, { forUpdate: true });
    assertAllowed(action, key.state);
    keys.push(key);
  }
  return keys;
}

/** Adds or overwrites tags, refusing to go past 20 tags on the key (existing + new). */
async function applyTags(tx: Tx, key: Key, tags: readonly Tag[]): Promise<void> {
  const existing = new Set((await listTags(tx, key.id)).map((t) => t.key));
  const added = tags.filter((t) => !existing.has(t.key)).length;
  if (existing.size + added > MAX_TAGS_PER_KEY) {
    throw limitExceeded(`a key has at most ${MAX_TAGS_PER_KEY} tags; ${key.id} has ${existing.size} and the request adds ${added}`);
  }
  await upsertTags(tx, key.id, tags);
}

async function audit(tx: Tx, caller: Caller, action: string, keys: readonly Key[], detail: Record<string, unknown>): Promise<void> {
  for (const key of keys) {
    await recordAudit(tx, { requestId: caller.requestId, accessKeyId: caller.accessKeyId, sourceIp: caller.sourceIp, action, keyId: key.id, detail });
  }
}

/**
 * TagResource / TagResources: adds tags to keys (an existing tag key gets the new value),
 * all keys or none.
 * @throws Rejected.LimitExceeded (400) past 20 tags on a key, Rejected.PendingDeletion (409),
 *   Forbidden.KeyNotFound / Forbidden.AliasNotFound (404), Forbidden.NoPermission (403)
 */
export async function tagKeys(deps: ServiceDeps, input: { keyIds: readonly string[]; tags: readonly Tag[] }, caller: Caller): Promise<void> {
  assertAdmin(caller);
  await withTransaction(deps.db, async (tx) => {
    const keys = await lockKeys(deps, tx, input.keyIds, caller, 'TagResource');
    for (const key of keys) await applyTags(tx, key, input.tags);
    await audit(tx, caller, 'TagResource', keys, { tagKeys: input.tags.map((t) => t.key) });
  });
}

/**
 * UntagResource / UntagResources: removes the named tag keys (absent ones are ignored), or
 * every tag when `tagKeys` is `'all'`.
 * @throws Rejected.PendingDeletion (409), Forbidden.KeyNotFound / Forbidden.AliasNotFound (404),
 *   Forbidden.NoPermission (403)
 */
export async function untagKeys(
  deps: ServiceDeps,
  input: { keyIds: readonly string[]; tagKeys: readonly string[] | 'all' },
  caller: Caller,
): Promise<void> {
  assertAdmin(caller);
  await withTransaction(deps.db, async (tx) => {
    const keys = await lockKeys(deps, tx, input.keyIds, caller, 'UntagResource');
    for (const key of keys) {
      if (input.tagKeys === 'all') await deleteAllTags(tx, key.id);
      else await deleteTags(tx, key.id, input.tagKeys);
    }
    await audit(tx, caller, 'UntagResource', keys, { tagKeys: input.tagKeys });
  });
}

/**
 * ListResourceTags: a key's tags in tag-key order.
 * @throws Forbidden.KeyNotFound / Forbidden.AliasNotFound (404), Forbidden.NoPermission (403)
 */
export async function listKeyTags(deps: ServiceDeps, reference: string, caller: Caller): Promise<{ keyId: string; tags: Tag[] }> {
  const key = await findKey(deps, reference, caller);
  assertAllowed('ListResourceTags', key.state);
  return { keyId: key.id, tags: await listTags(deps.db, key.id) };
}

/** ListTagResources returns 200 rows per page (the 3.x SDK's NextToken documentation). */
export const TAG_RESOURCES_PAGE_SIZE = 200;

export interface TagResourcesQuery {
  /** `ResourceId.N` (ids, aliases or ARNs); unknown ids simply match nothing. */
  keyIds?: readonly string[] | undefined;
  /** `Tag.N.Key` / `Tag.N.Value`: a pair matches when it has one of these (any value if none given). */
  tags?: ReadonlyArray<{ key: string; value?: string | undefined }> | undefined;
  nextToken?: string | undefined;
  pageSize?: number | undefined;
}

/**
 * ListTagResources: (key, tag) pairs of the named keys and/or matching the tag filters, in
 * (key id, tag key) order; `nextToken` is empty on the last page. Keys a key-user may not
 * see are left out, as if they did not exist.
 * @throws InvalidParameter(NextToken), Forbidden.AliasNotFound (404) for an unknown alias
 */
export async function pageTagResources(
  deps: ServiceDeps,
  query: TagResourcesQuery,
  caller: Caller,
): Promise<{ pairs: KeyTag[]; nextToken: string }> {
  const after: TagCursor | null = query.nextToken ? decodeTagCursor(query.nextToken) : null;
  const keyIds = query.keyIds ? await Promise.all(query.keyIds.map((r) => resolveKeyId(deps, deps.db, r))) : null;
  const limit = query.pageSize ?? TAG_RESOURCES_PAGE_SIZE;
  // One row more than a page tells whether another page exists.
  const rows = await listTagPairs(deps.db, {
    keyIds,
    tags: query.tags && query.tags.length > 0 ? query.tags : null,
    instanceIds: visibleInstanceIds(caller),
    after: after ? { keyId: after.resourceId, tagKey: after.tagKey } : null,
    limit: limit + 1,
  });
  const pairs = rows.slice(0, limit);
  const last = pairs[pairs.length - 1];
  const nextToken = rows.length > limit && last ? encodeTagCursor({ resourceId: last.keyId, tagKey: last.key }) : '';
  return { pairs, nextToken };
}
