import { keyVersionNotFound } from '../domain/errors.js';
import { assertAllowed } from '../domain/key.js';
import { getVersion, listVersions } from '../store/versions.js';
import type { KeyVersion } from '../domain/key-version.js';
import type { Caller, ServiceDeps } from './context.js';
import { loadKey } from './key-lookup.js';
import { isVersionId } from '../domain/ids.js';

/**
 * ListKeyVersions: a key's versions, oldest first (every key has one from creation).
 * @throws Forbidden.KeyNotFound / Forbidden.AliasNotFound (404), Forbidden.NoPermission (403)
 */
export async function pageKeyVersions(
  deps: ServiceDeps,
  reference: string,
  page: { pageNumber: number; pageSize: number },
  caller: Caller,
): Promise<{ keyId: string; items: KeyVersion[]; total: number }> {
  const key = await loadKey(deps, deps.db, reference, caller);
  assertAllowed('ListKeyVersions', key.state);
  const { items, total } = await listVersions(deps.db, key.id, { offset: (page.pageNumber - 1) * page.pageSize, limit: page.pageSize });
  return { keyId: key.id, items, total };
}

/**
 * DescribeKeyVersion.
 * @throws Forbidden.KeyNotFound (404) for an unknown key or a version of another key,
 *   Forbidden.AliasNotFound (404), Forbidden.NoPermission (403)
 */
export async function describeKeyVersion(deps: ServiceDeps, reference: string, versionId: string, caller: Caller): Promise<KeyVersion> {
  const key = await loadKey(deps, deps.db, reference, caller);
  assertAllowed('DescribeKeyVersion', key.state);
  // Checked before the query: the column is a uuid, and a malformed id must not become a 500.
  if (!isVersionId(versionId)) throw keyVersionNotFound();
  const version = await getVersion(deps.db, versionId.toLowerCase());
  if (!version || version.keyId !== key.id) throw keyVersionNotFound();
  return version;
}
