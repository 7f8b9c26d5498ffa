/**
 * Per-process cache of object handles. SoftHSM2 searches its objects linearly (~230 ms with
 * 20,000 objects, DESIGN.md), so the token is searched once per object and process, never on
 * the hot path; a handle that went stale (the object was destroyed by another process) is
 * re-resolved once.
 */
import pkcs11js from 'pkcs11js';
import { KmsError } from '../../domain/errors.js';
import { findObjects } from './object-inventory.js';

type Handle = pkcs11js.Handle;

/** Runs `fn` on a pooled session, translating vendor errors (Pkcs11Hsm.run). */
export type SessionRunner = <T>(operation: string, fn: (session: Handle) => Promise<T> | T) => Promise<T>;

/** Waits between token re-searches for an object the database says exists: ~3.3 s in all. */
export const RESEARCH_BACKOFF_MS: readonly number[] = [20, 40, 80, 160, 320, 640, 1_000, 1_000];

/**
 * Thrown by `findPatiently` when the token shows nothing and this process's view of the token
 * is stale (Pkcs11Hsm.tokenViewIntact): the adapter restarts the module and runs the whole
 * operation again (Pkcs11Hsm.op), rather than waiting for an object it can never see.
 */
export class StaleTokenView extends Error {
  /**
   * @param evidence `broken`: the token answers as SoftHSM2 does once its view went stale for
   *   good (Pkcs11Hsm.tokenViewIntact); `persistent-miss`: an object the database says exists
   *   stayed invisible through the whole re-search while the token answers normally (another
   *   process's object missed by a generation race: Pkcs11Hsm.op)
   */
  constructor(readonly evidence: 'broken' | 'persistent-miss' = 'broken') {
    super('The token view of this process is stale.');
  }
}

export class ObjectHandleCache {
  private readonly handles = new Map<string, Handle>();

  /** @param tokenViewIntact asked when a search finds nothing: false means this process cannot see new objects any more */
  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly run: SessionRunner,
    private readonly tokenViewIntact: () => Promise<boolean> = async () => true,
    /** Whether a miss that outlasted the re-search may restart the module now (not too soon after the last restart). */
    private readonly mayRestartForMiss: () => boolean = () => false,
  ) {}

  /** Throws StaleTokenView if this process cannot see the token change any more (a miss is then no answer). */
  async assertTokenView(): Promise<void> {
    if (!(await this.tokenViewIntact())) throw new StaleTokenView();
  }

  /** Forgets every handle (a module restart: the numbers may name other objects now). */
  clear(): void {
    this.handles.clear();
  }

  set(cacheKey: string, handle: Handle): void {
    this.handles.set(cacheKey, handle);
  }

  forget(cacheKey: string): void {
    this.handles.delete(cacheKey);
  }

  /** One token search per object and process; the handle is cached under `cacheKey`. */
  async find(cacheKey: string, template: pkcs11js.Template): Promise<Handle | undefined> {
    const cached = this.handles.get(cacheKey);
    if (cached) return cached;
    const [handle] = await this.run('findKey', (session) => findObjects(this.p11, session, template));
    if (handle) this.handles.set(cacheKey, handle);
    return handle;
  }

  /**
   * `find`, then — when the token shows nothing — a bounded re-search with backoff (issue 19):
   * SoftHSM2 shows one process's new token objects to another only after its own refresh
   * (measured: up to 2.4 s), so a version the database says exists may be briefly invisible
   * here. Callers turn a final miss into a retryable 503. A miss in a process whose token view
   * went stale for good throws StaleTokenView at once; a miss that outlasts the re-search throws
   * it too when `mayRestartForMiss` allows (then the adapter restarts the module and tries again).
   */
  async findPatiently(cacheKey: string, template: pkcs11js.Template): Promise<Handle | undefined> {
    const handle = await this.find(cacheKey, template);
    if (handle !== undefined) return handle;
    if (!(await this.tokenViewIntact())) throw new StaleTokenView();
    for (const delayMs of RESEARCH_BACKOFF_MS) {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      const found = await this.find(cacheKey, template);
      if (found !== undefined) return found;
    }
    // SoftHSM2 2.6.1 can miss another process's object for good with a healthy-looking token:
    // two processes creating at once, one records the token's generation counter with the
    // other's increment in it and never lists the directory again until a third write (found by
    // the multi-node probe: 503s for 107 s on a quiet deployment). A re-read cures it.
    if (this.mayRestartForMiss()) throw new StaleTokenView('persistent-miss');
    return undefined;
  }

  /**
   * Searches the token now, whatever the cache holds, and leaves the cache agreeing with what
   * was found. For questions about existence (another process may have destroyed or created
   * the object since it was cached), never for the hot path.
   */
  async refresh(cacheKey: string, template: pkcs11js.Template): Promise<Handle | undefined> {
    const [handle] = await this.run('findKey', (session) => findObjects(this.p11, session, template));
    if (handle) this.handles.set(cacheKey, handle);
    else this.handles.delete(cacheKey);
    return handle;
  }

  /**
   * Runs `fn` with the object's handle; if it fails as an internal error (typically
   * CKR_OBJECT_HANDLE_INVALID for a handle destroyed elsewhere), looks the object up again
   * (patiently) and retries once with a different handle. Found no more (another process destroyed it: a
   * key deletion or material expiry whose commit is in flight), it is `missing()` — a
   * retryable answer, then the key's own state once that commit lands — not a 500 (found by
   * the multi-node soak: a Decrypt racing a worker's deletion).
   */
  async withObject<T>(
    cacheKey: string,
    template: pkcs11js.Template,
    missing: () => KmsError,
    fn: (handle: Handle) => Promise<T>,
  ): Promise<T> {
    const handle = await this.findPatiently(cacheKey, template);
    if (handle === undefined) throw missing();
    try {
      return await fn(handle);
    } catch (error) {
      if (!(error instanceof KmsError) || error.kind !== 'internal') throw error;
      this.handles.delete(cacheKey);
      // Patient too: the object may have been replaced (a re-import on another node destroys and
      // makes it again), and the new one be not visible here yet (a probe saw 503s without it).
      const again = await this.findPatiently(cacheKey, template);
      if (again === undefined) throw missing();
      if (again.equals(handle)) throw error;
      return fn(again);
    }
  }
}
