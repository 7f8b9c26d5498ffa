/** How long a cached entry may be served after it was read. */
export interface CacheFreshness {
  maxAgeMs(): number;
}

/**
 * The age bound of every metadata cache, which depends on whether this node hears the other
 * nodes' invalidations: while the invalidation channel is subscribed, entries live up to
 * `subscribedMs` (KMS_CACHE_MAX_AGE_MS, a safety net for a lost publish); while it is down
 * (and before its first subscription) only `unsubscribedMs` (KMS_CACHE_FALLBACK_TTL_MS, or
 * KMS_ACCESS_KEY_CACHE_TTL_MS for access keys): the bound on how long a change made on
 * another node can go unseen here.
 */
export class ChannelFreshness implements CacheFreshness {
  constructor(
    private readonly channel: { readonly subscribed: boolean },
    private readonly subscribedMs: number,
    private readonly unsubscribedMs: number,
  ) {}

  maxAgeMs(): number {
    return this.channel.subscribed ? this.subscribedMs : this.unsubscribedMs;
  }
}
