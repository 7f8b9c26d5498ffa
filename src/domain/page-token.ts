import { invalidParameter } from './errors.js';
import { isKeyIdFormat } from './ids.js';
import { validateTag } from './tags.js';

/**
 * ListTagResources' `NextToken` (alibaba-api.md §3.5): an opaque cursor. Ours is the last
 * (resource id, tag key) pair of a page, base64url-encoded JSON, so paging is keyset-based
 * and stays correct while tags are added or removed between pages.
 */
export interface TagCursor {
  resourceId: string;
  tagKey: string;
}

export function encodeTagCursor(cursor: TagCursor): string {
  return Buffer.from(JSON.stringify([cursor.resourceId, cursor.tagKey]), 'utf8').toString('base64url');
}

const notIssued = () => invalidParameter('NextToken', 'Pass the NextToken of the previous response unchanged.');

/**
 * @throws InvalidParameter(NextToken) for anything this service did not issue: its exact
 *   encoding (canonical base64url of canonical JSON, so no second spelling of a cursor), a key
 *   id's shape and a tag key as tags are validated (a probe paged with `["",""]` and others).
 */
export function decodeTagCursor(token: string): TagCursor {
  const text = Buffer.from(token, 'base64url').toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw notIssued();
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || typeof parsed[0] !== 'string' || typeof parsed[1] !== 'string') throw notIssued();
  const cursor = { resourceId: parsed[0], tagKey: parsed[1] };
  if (encodeTagCursor(cursor) !== token || !isKeyIdFormat(cursor.resourceId)) throw notIssued();
  try {
    validateTag(cursor.tagKey, '');
  } catch {
    throw notIssued();
  }
  return cursor;
}
