import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { MetadataChange } from '../services/repositories.js';

/** The Redis pub/sub channel of one deployment (its queue prefix: every node of it shares one). */
export const invalidationChannelName = (queuePrefix: string): string => `${queuePrefix}:cache-invalidation`;

/** What travels on the channel. `origin`: the publishing node, which applied the changes already. */
interface InvalidationMessage {
  origin: string;
  changes: MetadataChange[];
}

/** How soon the subscriber reconnects after losing Redis (ioredis retryStrategy), in ms. */
const RECONNECT_DELAY_MS = (attempt: number) => Math.min(50 * attempt, 500);
/** How long a write waits at most for Redis to take its invalidation message. */
const PUBLISH_WAIT_MS = 200;
/** How soon a refused SUBSCRIBE is sent again. */
const SUBSCRIBE_RETRY_MS = 200;

/**
 * Cross-node cache invalidation over Redis pub/sub (not LISTEN/NOTIFY: DESIGN.md, the PGlite
 * note). Every node publishes what its commits changed (`publish`, after it dropped the
 * entries itself) and hears the others' on a dedicated subscriber connection, named
 * `connectionName` (so an operator or a test can find it in CLIENT LIST).
 *
 * Messages sent while the subscriber is disconnected are lost, so: while it is down,
 * `subscribed` is false and the caches serve entries only for their short fallback TTL
 * (cache-freshness.ts); once it has subscribed again, `onResubscribed` drops everything.
 */
export class CacheInvalidationChannel {
  readonly nodeId = `${process.pid}-${randomUUID().slice(0, 8)}`;
  readonly connectionName = `hsm-kms-cache-invalidation-${this.nodeId}`;
  private subscriberConnected = false;
  private closed = false;
  private subscriber: Redis | undefined;
  private apply: (changes: readonly MetadataChange[]) => void = () => undefined;
  private onResubscribed: () => void = () => undefined;

  constructor(
    private readonly publisher: Redis,
    readonly channel: string,
    private readonly logger: Logger,
  ) {}

  /** Whether this node hears the other nodes' invalidations now. */
  get subscribed(): boolean {
    return this.subscriberConnected;
  }

  /**
   * Connects the subscriber; `apply` gets every other node's changes, `dropAll` runs after
   * every (re)subscription. Waits at most `waitMs` for the first subscription (until then the
   * caches run on their fallback TTL).
   */
  async start(handlers: { apply: (changes: readonly MetadataChange[]) => void; dropAll: () => void }, waitMs = 1_000): Promise<void> {
    this.apply = handlers.apply;
    this.onResubscribed = handlers.dropAll;
    const subscriber = this.publisher.duplicate({
      connectionName: this.connectionName,
      lazyConnect: true,
      autoResubscribe: false,
      maxRetriesPerRequest: null,
      retryStrategy: RECONNECT_DELAY_MS,
    });
    this.subscriber = subscriber;
    const firstSubscription = new Promise<void>((resolve) => {
      const subscribe = () => {
        if (this.closed || subscriber.status !== 'ready') return;
        subscriber.subscribe(this.channel).then(
          () => {
            this.onResubscribed();
            this.subscriberConnected = true;
            this.logger.info({ channel: this.channel }, 'cache invalidation channel subscribed');
            resolve();
          },
          (error: unknown) => {
            // Refused (a NOPERM, say) on a live connection: try again; the caches stay on their fallback TTL meanwhile.
            this.logger.warn({ err: errorMessage(error) }, 'cache invalidation: subscribe failed; retrying');
            setTimeout(subscribe, SUBSCRIBE_RETRY_MS).unref();
          },
        );
      };
      subscriber.on('ready', subscribe);
    });
    subscriber.on('close', () => {
      if (this.subscriberConnected) this.logger.warn('cache invalidation channel lost: caches fall back to their short TTL');
      this.subscriberConnected = false;
    });
    // Every reconnect attempt of a lost Redis errors; the loss itself is the one warning above.
    subscriber.on('error', (error: Error) => this.logger.debug({ err: error.message }, 'cache invalidation connection error'));
    subscriber.on('message', (_channel: string, text: string) => this.receive(text));
    subscriber.connect().catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([firstSubscription, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
  }

  /**
   * Tells the other nodes (this node applied the changes already). Resolves once Redis has
   * taken the message — so it is on its way to every subscriber before the write is answered —
   * or after PUBLISH_WAIT_MS at most (a slow or lost Redis must not stall writes: a lost
   * publish is bounded by KMS_CACHE_MAX_AGE_MS). Never rejects.
   */
  publish(changes: readonly MetadataChange[]): Promise<void> {
    const message: InvalidationMessage = { origin: this.nodeId, changes: [...changes] };
    const sent = this.publisher.publish(this.channel, JSON.stringify(message)).then(
      () => undefined,
      (error: unknown) => this.logger.warn({ err: errorMessage(error) }, 'cache invalidation: publish failed'),
    );
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, PUBLISH_WAIT_MS)));
    return Promise.race([sent, waited]).finally(() => clearTimeout(timer));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.subscriberConnected = false;
    this.subscriber?.disconnect();
  }

  private receive(text: string): void {
    const message = parseMessage(text);
    if (!message) {
      this.logger.warn('cache invalidation: malformed message ignored');
      return;
    }
    if (message.origin === this.nodeId) return;
    this.apply(message.changes);
  }
}

/**
 * Drops every cache entry on every node of the deployment (a test rig's reset, after it wrote
 * rows directly): publishes `everything` from no node, so every node, the caller's included,
 * applies it.
 */
export async function publishCacheDropAll(redis: Redis, queuePrefix: string): Promise<void> {
  const message: InvalidationMessage = { origin: 'operator', changes: [{ kind: 'everything' }] };
  await redis.publish(invalidationChannelName(queuePrefix), JSON.stringify(message));
}

const KINDS_WITH_ID = new Set(['key', 'version', 'accessKey', 'instance']);

function parseMessage(text: string): InvalidationMessage | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { origin, changes } = value as { origin?: unknown; changes?: unknown };
  if (typeof origin !== 'string' || !Array.isArray(changes)) return undefined;
  const valid = changes.every((c: unknown) => {
    if (typeof c !== 'object' || c === null) return false;
    const { kind, id, name } = c as { kind?: unknown; id?: unknown; name?: unknown };
    if (kind === 'everything') return true;
    if (kind === 'alias') return typeof name === 'string';
    return typeof kind === 'string' && KINDS_WITH_ID.has(kind) && typeof id === 'string';
  });
  return valid ? { origin, changes: changes as MetadataChange[] } : undefined;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
