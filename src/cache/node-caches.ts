import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { KmsConfig } from '../config.js';
import type { Hsm } from '../hsm/hsm.js';
import type { SoftwareCipher } from '../hsm/software.js';
import type { Repositories } from '../services/repositories.js';
import { setChangeSink } from '../store/change-tracking.js';
import type { Db } from '../store/db.js';
import { pgRepositories } from '../store/pg-repositories.js';
import { cachedRepositories } from './cached-repositories.js';
import { ChangeJournalReader } from './change-journal.js';
import { CacheInvalidationChannel, invalidationChannelName } from './invalidation-channel.js';
import { MetadataCaches } from './metadata-caches.js';

/** How far back each read of the cache-change journal looks: commits land within it of their row's stamp. */
const JOURNAL_WINDOW_MS = 5_000;
/** How long journal rows are kept (readers prune older ones). */
const JOURNAL_RETENTION_MS = 10 * 60_000;

/** This node's metadata caches, the repositories in front of them, and their invalidation channel. */
export interface NodeCaches {
  caches: MetadataCaches;
  invalidation: CacheInvalidationChannel;
  /** What ServiceDeps.repositories is: the cached repositories over pg. */
  repositories: Repositories;
  /** Drops every entry on this node at once and on every other node of the deployment (a test rig's reset). */
  dropEverywhere(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Wires the caches for one process: every commit on `db` drops what it changed here,
 * synchronously, then publishes it and waits (briefly) for Redis to take it before the write
 * is answered (store/change-tracking.ts); the other nodes' changes arrive on the channel, and
 * from the cache-change journal about a second later at most when a publish never went out
 * (cache/change-journal.ts). Waits up to a second for the first subscription.
 */
export async function startNodeCaches(input: {
  db: Db;
  redis: Redis;
  config: KmsConfig;
  logger: Logger;
  software: SoftwareCipher;
  hsm: Pick<Hsm, 'forgetWrappedKey'>;
}): Promise<NodeCaches> {
  const { db, redis, config, logger, software, hsm } = input;
  const invalidation = new CacheInvalidationChannel(redis, invalidationChannelName(config.jobs.queuePrefix), logger);
  const caches = new MetadataCaches(
    {
      sizes: config.cache.sizes,
      maxAgeMs: config.cache.maxAgeMs,
      fallbackTtlMs: config.cache.fallbackTtlMs,
      accessKeyFallbackTtlMs: config.accessKeyCacheTtlMs,
    },
    invalidation,
    // What else this process keeps of a version: the SOFTWARE tier's unsealed material, and the
    // HsmEncryptedDatabase key unwrapped into a session object.
    (versionId) => {
      if (versionId === undefined) return software.clear();
      software.forget(versionId);
      hsm.forgetWrappedKey(versionId);
    },
  );
  setChangeSink(
    db,
    (changes) => {
      caches.apply(changes);
      return invalidation.publish(changes);
    },
    invalidation.nodeId,
  );
  await invalidation.start({ apply: (changes) => caches.apply(changes), dropAll: () => caches.dropAll() });
  // The backstop for a publish that never went out (the writer killed after its commit).
  const journal = new ChangeJournalReader(db, (changes) => caches.apply(changes), invalidation.nodeId, logger, {
    intervalMs: config.cache.journalPollMs,
    windowMs: JOURNAL_WINDOW_MS,
    retentionMs: JOURNAL_RETENTION_MS,
  });
  journal.start();
  return {
    caches,
    invalidation,
    repositories: cachedRepositories(pgRepositories(db), caches),
    dropEverywhere() {
      caches.dropAll();
      return invalidation.publish([{ kind: 'everything' }]);
    },
    close: async () => {
      await journal.close();
      await invalidation.close();
    },
  };
}
