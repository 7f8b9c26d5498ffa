import type { Instance } from '../domain/instance.js';
import type { Key } from '../domain/key.js';
import type { KeyVersion } from '../domain/key-version.js';
import type { MetadataChange } from '../services/repositories.js';
import type { Credential } from '../services/access.js';
import type { Alias } from '../store/aliases.js';
import { ChannelFreshness } from './cache-freshness.js';
import { type CacheStats, InvalidatingLru } from './invalidating-lru.js';

export interface MetadataCacheOptions {
  /** Entries per kind (KMS_CACHE_MAX_*); 0 turns that cache off. */
  sizes: { keys: number; versions: number; aliases: number; accessKeys: number; instances: number };
  /** Age bound while the invalidation channel is subscribed (KMS_CACHE_MAX_AGE_MS). */
  maxAgeMs: number;
  /** Age bound while it is not (KMS_CACHE_FALLBACK_TTL_MS). */
  fallbackTtlMs: number;
  /** The same for access keys (KMS_ACCESS_KEY_CACHE_TTL_MS); 0 turns the access-key cache off. */
  accessKeyFallbackTtlMs: number;
}

/** Version ids are uuids (Postgres compares them in any case); alias names are case-insensitive. */
export const versionCacheId = (id: string) => id.toLowerCase();
export const aliasCacheId = (name: string) => name.toLowerCase();

/**
 * This node's metadata caches, one bounded LRU per entity kind, and the one place a change
 * turns into dropped entries (`apply`): from this node's own commits (store/change-tracking.ts)
 * and from the other nodes' (cache/invalidation-channel.ts).
 */
export class MetadataCaches {
  readonly keys: InvalidatingLru<Key>;
  readonly versions: InvalidatingLru<KeyVersion>;
  readonly aliases: InvalidatingLru<Alias>;
  /** Access keys with their unsealed secrets (services/access.ts CredentialDirectory). */
  readonly credentials: InvalidatingLru<Credential>;
  readonly instances: InvalidatingLru<Instance>;

  /**
   * @param channel whether invalidations from other nodes are being heard now
   * @param forgetVersionMaterial drops what else this node keeps of a version (the SOFTWARE
   *   tier's unsealed material, an unwrapped HsmEncryptedDatabase key), called for every
   *   changed version and with no id for all
   */
  constructor(
    options: MetadataCacheOptions,
    channel: { readonly subscribed: boolean },
    private readonly forgetVersionMaterial: (versionId?: string) => void,
  ) {
    const freshness = new ChannelFreshness(channel, options.maxAgeMs, options.fallbackTtlMs);
    const accessKeyFreshness = new ChannelFreshness(channel, options.maxAgeMs, options.accessKeyFallbackTtlMs);
    this.keys = new InvalidatingLru(options.sizes.keys, freshness);
    this.versions = new InvalidatingLru(options.sizes.versions, freshness);
    this.aliases = new InvalidatingLru(options.sizes.aliases, freshness);
    this.instances = new InvalidatingLru(options.sizes.instances, freshness);
    this.credentials = new InvalidatingLru(options.accessKeyFallbackTtlMs > 0 ? options.sizes.accessKeys : 0, accessKeyFreshness);
  }

  /** Drops what the changes name, synchronously. */
  apply(changes: readonly MetadataChange[]): void {
    for (const change of changes) {
      switch (change.kind) {
        case 'key':
          this.keys.invalidate(change.id);
          break;
        case 'version':
          this.versions.invalidate(versionCacheId(change.id));
          this.forgetVersionMaterial(versionCacheId(change.id));
          break;
        case 'alias':
          this.aliases.invalidate(aliasCacheId(change.name));
          break;
        case 'accessKey':
          this.credentials.invalidate(change.id);
          break;
        case 'instance':
          this.instances.invalidate(change.id);
          break;
        case 'everything':
          this.dropAll();
          break;
      }
    }
  }

  /** Drops every entry of every cache (and the SOFTWARE tier's material). */
  dropAll(): void {
    for (const cache of [this.keys, this.versions, this.aliases, this.credentials, this.instances]) cache.clear();
    this.forgetVersionMaterial();
  }

  /** Hit/miss/entry counters per cache, for the metrics endpoint. */
  stats(): { keys: CacheStats; versions: CacheStats; aliases: CacheStats; accessKeys: CacheStats; instances: CacheStats } {
    return {
      keys: this.keys.stats(),
      versions: this.versions.stats(),
      aliases: this.aliases.stats(),
      accessKeys: this.credentials.stats(),
      instances: this.instances.stats(),
    };
  }
}
