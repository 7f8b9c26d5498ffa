import { keyVersionNotFound } from '../domain/errors.js';
import { assertAllowed } from '../domain/key.js';
import { listVersions } from '../store/versions.js';
import type { KeyVersion } from '../domain/key-version.js';
import type { Caller, ServiceDeps } from './context.js';
import { findKey } from './key-lookup.js';
import { isVersionId } from '../domain/ids.js';
import { versionEncryptionCount } from '../store/version-usage.js';

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
  const key = await findKey(deps, reference, caller);
  assertAllowed('ListKeyVersions', key.state);
  const { items, total } = await listVersions(deps.db, key.id, { offset: (page.pageNumber - 1) * page.pageSize, limit: page.pageSize });
  return { keyId: key.id, items, total };
}

/**
 * DescribeKeyVersion.
 * @throws Forbidden.KeyNotFound (404) for an unknown key or a version of another key,
 *   Forbidden.AliasNotFound (404), Forbidden.NoPermission (403)
 */
export async function describeKeyVersion(deps: ServiceDeps, reference: string, versionId: string, caller: Caller): Promise<DescribedKeyVersion> {
  const key = await findKey(deps, reference, caller);
  assertAllowed('DescribeKeyVersion', key.state);
  // Checked before the query: the column is a uuid, and a malformed id must not become a 500.
  if (!isVersionId(versionId)) throw keyVersionNotFound();
  const version = await deps.repositories.versions.byId(versionId.toLowerCase());
  if (!version || version.keyId !== key.id) throw keyVersionNotFound();
  // Read apart from the (cached) version: the count changes with every flush, the version does not.
  return { version, encryptionCount: await versionEncryptionCount(deps.db, version.id) };
}

/** A version with its usage: AES-GCM encryptions made, as flushed by every process (services/version-usage.ts). */
export interface DescribedKeyVersion {
  version: KeyVersion;
  encryptionCount: number;
}
