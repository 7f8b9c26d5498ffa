import type { EntityCache } from '../services/repositories.js';
import type { CacheFreshness } from './cache-freshness.js';

/** Counters a metrics endpoint reads (issue 16: hit/miss per cache). */
export interface CacheStats {
  hits: number;
  misses: number;
  entries: number;
}

interface Entry<V> {
  value: V;
  /** When the read that produced it started (performance.now()). */
  readAt: number;
}

/** Generation slots: bounded memory however many ids get invalidated. */
const SLOTS = 4096;

/**
 * A bounded LRU read-through cache of one entity kind that never refills itself with a value
 * read before an invalidation:
 * - each id hashes to a generation slot; `invalidate` bumps it, `clear` bumps the epoch; a
 *   load only stores its result if neither moved while it ran (the classic race: a read that
 *   started before a committed change must not put the old row back after the change's
 *   invalidation dropped it);
 * - an entry is served only while younger than `freshness.maxAgeMs()` (long while the
 *   invalidation channel is subscribed, short while it is down);
 * - missing rows (`undefined`) are never cached: a key created on another node is found at once;
 * - concurrent misses of one id share one load, unless an invalidation came in between.
 * Ids are compared as given: callers normalise case (cached-repositories.ts).
 */
export class InvalidatingLru<V> implements EntityCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private readonly loading = new Map<string, Promise<V | undefined>>();
  private readonly generations = new Uint32Array(SLOTS);
  private epoch = 0;
  /** Moves on every invalidate and clear, whatever the id: what `prime` compares against. */
  private changes = 0;
  private hits = 0;
  private misses = 0;

  /** `capacity` 0: nothing is kept (every read loads). */
  constructor(
    private readonly capacity: number,
    private readonly freshness: CacheFreshness,
  ) {}

  async getOrLoad(id: string, load: () => Promise<V | undefined>): Promise<V | undefined> {
    const entry = this.entries.get(id);
    if (entry !== undefined) {
      if (performance.now() - entry.readAt <= this.freshness.maxAgeMs()) {
        this.hits++;
        // Map keeps insertion order: re-inserting makes it the most recently used.
        this.entries.delete(id);
        this.entries.set(id, entry);
        return entry.value;
      }
      this.entries.delete(id);
    }
    this.misses++;
    const pending = this.loading.get(id);
    if (pending) return pending;
    const slot = slotOf(id);
    const generation = this.generations[slot];
    const epoch = this.epoch;
    const readAt = performance.now();
    const done = () => {
      if (this.loading.get(id) === promise) this.loading.delete(id);
    };
    const promise = load().then(
      (value) => {
        done();
        if (value !== undefined && this.generations[slot] === generation && this.epoch === epoch) this.store(id, value, readAt);
        return value;
      },
      (error: unknown) => {
        done();
        throw error;
      },
    );
    if (this.capacity > 0) this.loading.set(id, promise);
    return promise;
  }

  /** Drops the entry of `id` and makes every load of it already under way unable to store. */
  invalidate(id: string): void {
    const slot = slotOf(id);
    this.generations[slot] = (this.generations[slot]! + 1) >>> 0;
    this.changes++;
    this.entries.delete(id);
    this.loading.delete(id);
  }

  /** Drops every entry whose value matches (for changes named by another field than the id). */
  invalidateWhere(matches: (value: V) => boolean): void {
    for (const [id, entry] of this.entries) if (matches(entry.value)) this.invalidate(id);
  }

  /** Drops everything, including what loads under way would store. */
  clear(): void {
    this.epoch++;
    this.changes++;
    this.entries.clear();
    this.loading.clear();
  }

  /**
   * For a value read along with another entity (a key's primary version, read in the key's
   * query): take `changeMark()` before the read starts, then `prime` with the value after it.
   * The value is stored only if nothing at all was invalidated in between (coarser than
   * getOrLoad's per-slot check, and as safe: a read that raced any change stores nothing).
   */
  changeMark(): { changes: number; readAt: number } {
    return { changes: this.changes, readAt: performance.now() };
  }

  prime(id: string, value: V, mark: { changes: number; readAt: number }): void {
    if (this.changes !== mark.changes || this.entries.has(id)) return;
    this.store(id, value, mark.readAt);
  }

  stats(): CacheStats {
    return { hits: this.hits, misses: this.misses, entries: this.entries.size };
  }

  private store(id: string, value: V, readAt: number): void {
    if (this.capacity <= 0) return;
    this.entries.delete(id);
    this.entries.set(id, { value, readAt });
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }
}

/** FNV-1a over the id's UTF-16 code units, folded into the slot range. */
function slotOf(id: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % SLOTS;
}
