import type { Repositories, StoreRepositories } from '../services/repositories.js';
import { type MetadataCaches, aliasCacheId, versionCacheId } from './metadata-caches.js';

/**
 * The repositories with this node's caches in front: in steady state the crypto actions'
 * reads (key by id or alias, its primary version, the version a blob names) make no Postgres
 * query. Access keys are cached with their secrets by services/access.ts (caches.credentials),
 * so `accessKeys` reads through. A key is loaded with its primary version in one query, which
 * primes the version cache: a crypto action's first use of a key costs one round trip, not two
 * (what dominates with 100,000 keys in random order, where most requests are first uses).
 */
export function cachedRepositories(store: StoreRepositories, caches: MetadataCaches): Repositories {
  return {
    keys: {
      byId: (id) =>
        caches.keys.getOrLoad(id, async () => {
          const mark = caches.versions.changeMark();
          const found = await store.keys.withPrimaryVersion(id);
          if (found?.primaryVersion) caches.versions.prime(versionCacheId(found.primaryVersion.id), found.primaryVersion, mark);
          return found?.key;
        }),
    },
    versions: { byId: (id) => caches.versions.getOrLoad(versionCacheId(id), () => store.versions.byId(id)) },
    aliases: { byName: (name) => caches.aliases.getOrLoad(aliasCacheId(name), () => store.aliases.byName(name)) },
    accessKeys: store.accessKeys,
    instances: { byId: (id) => caches.instances.getOrLoad(id, () => store.instances.byId(id)) },
  };
}
