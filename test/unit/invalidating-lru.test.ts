import { describe, expect, it } from 'vitest';
import { InvalidatingLru } from '../../src/cache/invalidating-lru.js';
import { MetadataCaches } from '../../src/cache/metadata-caches.js';

/** A load the test completes by hand, to interleave it with invalidations. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const always = { maxAgeMs: () => 60_000 };

describe('InvalidatingLru', () => {
  it('serves a loaded value from memory until it is invalidated', async () => {
    const cache = new InvalidatingLru<string>(10, always);
    let loads = 0;
    const load = async () => `v${++loads}`;
    expect(await cache.getOrLoad('a', load)).toBe('v1');
    expect(await cache.getOrLoad('a', load)).toBe('v1');
    cache.invalidate('a');
    expect(await cache.getOrLoad('a', load)).toBe('v2');
    expect(cache.stats()).toEqual({ hits: 1, misses: 2, entries: 1 });
  });

  it('a read that started before an invalidation does not put its old value back (the refill race)', async () => {
    const cache = new InvalidatingLru<string>(10, always);
    const slow = deferred<string>();
    const stale = cache.getOrLoad('a', () => slow.promise);
    cache.invalidate('a');
    slow.resolve('old');
    expect(await stale).toBe('old');
    expect(await cache.getOrLoad('a', async () => 'new')).toBe('new');
  });

  it('prime stores a value read along with another entity, unless anything was invalidated since its mark', async () => {
    const cache = new InvalidatingLru<string>(10, always);
    const unchanged = cache.changeMark();
    cache.prime('a', 'read with its key', unchanged);
    expect(await cache.getOrLoad('a', async () => 'loaded')).toBe('read with its key');

    const raced = cache.changeMark();
    cache.invalidate('some-other-id');
    cache.prime('b', 'stale', raced);
    expect(await cache.getOrLoad('b', async () => 'loaded')).toBe('loaded');

    const cleared = cache.changeMark();
    cache.clear();
    cache.prime('c', 'stale', cleared);
    expect(await cache.getOrLoad('c', async () => 'loaded')).toBe('loaded');
  });

  it('prime never replaces an entry already held', async () => {
    const cache = new InvalidatingLru<string>(10, always);
    const mark = cache.changeMark();
    expect(await cache.getOrLoad('a', async () => 'loaded')).toBe('loaded');
    cache.prime('a', 'primed', mark);
    expect(await cache.getOrLoad('a', async () => 'again')).toBe('loaded');
  });

  it('clear also stops loads under way from storing, and a later reader does not join them', async () => {
    const cache = new InvalidatingLru<string>(10, always);
    const slow = deferred<string>();
    const stale = cache.getOrLoad('a', () => slow.promise);
    cache.clear();
    const fresh = cache.getOrLoad('a', async () => 'new');
    slow.resolve('old');
    expect([await stale, await fresh]).toEqual(['old', 'new']);
    expect(await cache.getOrLoad('a', async () => 'other')).toBe('new');
  });

  it('concurrent misses of one id share one load', async () => {
    const cache = new InvalidatingLru<string>(10, always);
    let loads = 0;
    const slow = deferred<string>();
    const reads = [cache.getOrLoad('a', () => (loads++, slow.promise)), cache.getOrLoad('a', () => (loads++, slow.promise))];
    slow.resolve('v');
    expect(await Promise.all(reads)).toEqual(['v', 'v']);
    expect(loads).toBe(1);
  });

  it('never caches a missing row', async () => {
    const cache = new InvalidatingLru<string>(10, always);
    expect(await cache.getOrLoad('a', async () => undefined)).toBeUndefined();
    expect(await cache.getOrLoad('a', async () => 'created')).toBe('created');
  });

  it('keeps at most `capacity` entries, evicting the least recently used', async () => {
    const cache = new InvalidatingLru<string>(2, always);
    await cache.getOrLoad('a', async () => 'a');
    await cache.getOrLoad('b', async () => 'b');
    await cache.getOrLoad('a', async () => 'unused');
    await cache.getOrLoad('c', async () => 'c');
    expect(cache.stats().entries).toBe(2);
    expect(await cache.getOrLoad('a', async () => 'reloaded')).toBe('a');
    expect(await cache.getOrLoad('b', async () => 'reloaded')).toBe('reloaded');
  });

  it('serves an entry only while younger than the freshness bound', async () => {
    let maxAgeMs = 60_000;
    const cache = new InvalidatingLru<string>(10, { maxAgeMs: () => maxAgeMs });
    await cache.getOrLoad('a', async () => 'v1');
    maxAgeMs = -1;
    expect(await cache.getOrLoad('a', async () => 'v2')).toBe('v2');
  });

  it('capacity 0 keeps nothing', async () => {
    const cache = new InvalidatingLru<string>(0, always);
    await cache.getOrLoad('a', async () => 'v1');
    expect(await cache.getOrLoad('a', async () => 'v2')).toBe('v2');
    expect(cache.stats().entries).toBe(0);
  });
});

describe('MetadataCaches', () => {
  const sizes = { keys: 10, versions: 10, aliases: 10, accessKeys: 10, instances: 10 };
  const options = { sizes, maxAgeMs: 60_000, fallbackTtlMs: 1_000, accessKeyFallbackTtlMs: 1_000 };

  it('a version change drops the version (ids in any case) and its SOFTWARE material; everything drops all', async () => {
    const forgotten: Array<string | undefined> = [];
    const caches = new MetadataCaches(options, { subscribed: true }, (id) => forgotten.push(id));
    const id = '0f8e2a4c-1b2d-4e5f-8a9b-0c1d2e3f4a5b';
    await caches.versions.getOrLoad(id, async () => ({ id }) as never);
    caches.apply([{ kind: 'version', id: id.toUpperCase() }]);
    expect(caches.stats().versions.entries).toBe(0);
    caches.apply([{ kind: 'everything' }]);
    expect(forgotten).toEqual([id, undefined]);
  });

  it('serves entries only for the fallback TTL while the channel is down', async () => {
    const channel = { subscribed: false };
    const caches = new MetadataCaches({ ...options, fallbackTtlMs: 0 }, channel, () => undefined);
    await caches.keys.getOrLoad('key-1', async () => 'old' as never);
    const start = performance.now();
    while (performance.now() === start) await Promise.resolve();
    expect(await caches.keys.getOrLoad('key-1', async () => 'new' as never)).toBe('new');
    channel.subscribed = true;
    expect(await caches.keys.getOrLoad('key-1', async () => 'newer' as never)).toBe('new');
  });
});
