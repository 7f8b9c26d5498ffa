/**
 * Per-process, bounded LRU of unwrapped HsmEncryptedDatabase version keys: session objects
 * inside the token (never key material in host memory), by cache key.
 *
 * PKCS#11 session objects die with the session that created them, and a pooled session can
 * be replaced at any time (session-pool.ts). So one dedicated, long-lived *owner* session
 * creates (C_UnwrapKey) and destroys every unwrapped object, and every pool session uses
 * them by handle (a session object is visible to all sessions of the application). If the
 * owner session is lost, every object went with it: the owner is reopened, the cache emptied,
 * and the caller's key unwrapped again. Entries in use are pinned; an evicted pinned entry is
 * destroyed when its last user is done.
 */
import pkcs11js from 'pkcs11js';
import { KmsError } from '../../domain/errors.js';
import { isSessionLost } from './errors.js';

type Handle = pkcs11js.Handle;

interface Entry {
  handle: Handle;
  pins: number;
  /** Out of the cache; destroyed once no caller uses it. */
  evicted: boolean;
  /** Destroyed, or died with a lost owner session: never destroyed (again). */
  gone: boolean;
}

export class UnwrappedKeyCache {
  private owner: Handle | undefined;
  /** Map order is recency order: the first entry is the least recently used. */
  private readonly entries = new Map<string, Entry>();
  private closed = false;

  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private slot: Handle,
    readonly capacity: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * Runs `fn` with the session object for `cacheKey`, made by `unwrap` (called with the owner
   * session) on a miss. If `fn` fails and the object turns out to be gone (its owner session
   * was lost, or another path destroyed it), the key is unwrapped once more and `fn` retried
   * once. Client errors (a tag that does not verify) are never retried.
   */
  async use<T>(cacheKey: string, unwrap: (owner: Handle) => Handle, fn: (handle: Handle) => Promise<T>): Promise<T> {
    const entry = this.acquire(cacheKey, unwrap);
    try {
      return await fn(entry.handle);
    } catch (error) {
      if (error instanceof KmsError && error.kind === 'client') throw error;
      if (this.isAlive(entry.handle)) throw error;
      this.drop(cacheKey, entry);
      const again = this.acquire(cacheKey, unwrap);
      try {
        return await fn(again.handle);
      } finally {
        this.release(again);
      }
    } finally {
      this.release(entry);
    }
  }

  /** Drops (and destroys) the cached object of `cacheKey`, if any. */
  forget(cacheKey: string): void {
    const entry = this.entries.get(cacheKey);
    if (entry) this.drop(cacheKey, entry);
  }

  /**
   * Forgets every object and the owner session without touching the token (a module restart
   * ended them all, and their numbers may name others now). Only while none is in use.
   */
  abandon(): void {
    for (const entry of this.entries.values()) {
      entry.evicted = true;
      entry.gone = true;
    }
    this.entries.clear();
    this.owner = undefined;
  }

  /** The slot new owner sessions open on (after a module restart). */
  moveTo(slot: Handle): void {
    this.slot = slot;
  }

  close(): void {
    this.closed = true;
    // Closing the owner session destroys every object it made.
    this.resetOwner();
  }

  private acquire(cacheKey: string, unwrap: (owner: Handle) => Handle): Entry {
    const cached = this.entries.get(cacheKey);
    if (cached) {
      // Most recently used goes last.
      this.entries.delete(cacheKey);
      this.entries.set(cacheKey, cached);
      cached.pins += 1;
      return cached;
    }
    const entry: Entry = { handle: this.unwrapWithOwner(unwrap), pins: 1, evicted: false, gone: false };
    this.entries.set(cacheKey, entry);
    this.evictOverflow();
    return entry;
  }

  /** Synchronous on purpose: the owner session only ever runs one call at a time. */
  private unwrapWithOwner(unwrap: (owner: Handle) => Handle): Handle {
    if (this.closed) throw new KmsError('ServiceUnavailableTemporary', 'The HSM adapter is closed.', 'unavailable');
    try {
      return unwrap(this.ownerSession());
    } catch (error) {
      if (!isSessionLost(error)) throw error;
      this.resetOwner();
      return unwrap(this.ownerSession());
    }
  }

  private ownerSession(): Handle {
    this.owner ??= this.p11.C_OpenSession(this.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    return this.owner;
  }

  /** The owner session is gone: so is every object it made. */
  private resetOwner(): void {
    for (const entry of this.entries.values()) {
      entry.evicted = true;
      entry.gone = true;
    }
    this.entries.clear();
    if (this.owner !== undefined) {
      try {
        this.p11.C_CloseSession(this.owner);
      } catch {
        // Already gone.
      }
    }
    this.owner = undefined;
  }

  private isAlive(handle: Handle): boolean {
    if (this.owner === undefined) return false;
    try {
      this.p11.C_GetAttributeValue(this.owner, handle, [{ type: pkcs11js.CKA_CLASS }]);
      return true;
    } catch (error) {
      if (isSessionLost(error)) this.resetOwner();
      return false;
    }
  }

  private evictOverflow(): void {
    if (this.entries.size <= this.capacity) return;
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.capacity) break;
      this.drop(key, entry);
    }
  }

  private drop(cacheKey: string, entry: Entry): void {
    if (this.entries.get(cacheKey) === entry) this.entries.delete(cacheKey);
    entry.evicted = true;
    if (entry.pins === 0) this.destroy(entry);
  }

  private release(entry: Entry): void {
    entry.pins -= 1;
    if (entry.pins === 0 && entry.evicted) this.destroy(entry);
  }

  private destroy(entry: Entry): void {
    if (entry.gone || this.owner === undefined) return;
    entry.gone = true;
    try {
      this.p11.C_DestroyObject(this.owner, entry.handle);
    } catch {
      // Already gone (its session was lost): nothing to free.
    }
  }
}
