import type { Instance } from '../domain/instance.js';
import type { Key } from '../domain/key.js';
import type { KeyVersion } from '../domain/key-version.js';
import type { AccessKey } from '../store/access-keys.js';
import type { Alias } from '../store/aliases.js';

/*
 * The reads the use cases make outside a transaction, behind ports (STYLE.md: "give them
 * repository interfaces so a cache … can stand in front without touching a use case").
 * Implemented over pg in store/pg-repositories.ts, with a cache in front in cache/.
 * Transactional paths that lock rows (`FOR UPDATE`) and every write keep going to Postgres
 * directly through the store functions: a cache must never answer a read that decides a write.
 * Every method answers `undefined` for a missing row and throws only translated errors
 * (KmsError: 503 ServiceUnavailableTemporary when the store is unreachable).
 */

export interface KeyRepository {
  /** The key with this id (`key-…`), with its primary version's expiry. */
  byId(id: string): Promise<Key | undefined>;
}

/** The store's side: a key can also be read with its primary version in one query (what a cache loads). */
export interface KeyStoreRepository extends KeyRepository {
  withPrimaryVersion(id: string): Promise<{ key: Key; primaryVersion: KeyVersion | undefined } | undefined>;
}

export interface KeyVersionRepository {
  /** The version with this id (a uuid, any case). */
  byId(id: string): Promise<KeyVersion | undefined>;
}

export interface AliasRepository {
  /** The alias named `name` (`alias/…`), whatever its case (migration 004). */
  byName(name: string): Promise<Alias | undefined>;
}

export interface AccessKeyRepository {
  byId(id: string): Promise<AccessKey | undefined>;
}

export interface InstanceRepository {
  byId(id: string): Promise<Instance | undefined>;
}

export interface Repositories {
  keys: KeyRepository;
  versions: KeyVersionRepository;
  aliases: AliasRepository;
  accessKeys: AccessKeyRepository;
  instances: InstanceRepository;
}

/** The repositories over Postgres, which the caches read through. */
export interface StoreRepositories extends Repositories {
  keys: KeyStoreRepository;
}

/**
 * What a committed write changed, as the caches know it. The store records these on the
 * transaction that made the change; after COMMIT every node drops the entries they name.
 * `everything`: rows were changed some other way (a test rig's reset); drop every entry.
 */
export type MetadataChange =
  | { kind: 'key'; id: string }
  | { kind: 'version'; id: string }
  | { kind: 'alias'; name: string }
  | { kind: 'accessKey'; id: string }
  | { kind: 'instance'; id: string }
  | { kind: 'everything' };

/**
 * A read-through cache of one kind of entity, invalidated with the same changes as the
 * repositories (services/access.ts keeps unsealed access-key secrets in one).
 */
export interface EntityCache<V> {
  /** The cached value, or `load()`'s (cached unless undefined, or unless the entry changed meanwhile). */
  getOrLoad(id: string, load: () => Promise<V | undefined>): Promise<V | undefined>;
}
