import { invalidParameter } from './errors.js';

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

/** @throws InvalidParameter(NextToken) for anything this service did not issue. */
export function decodeTagCursor(token: string): TagCursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalidParameter('NextToken', 'Pass the NextToken of the previous response unchanged.');
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || typeof parsed[0] !== 'string' || typeof parsed[1] !== 'string') {
    throw invalidParameter('NextToken', 'Pass the NextToken of the previous response unchanged.');
  }
  return { resourceId: parsed[0], tagKey: parsed[1] };
}
