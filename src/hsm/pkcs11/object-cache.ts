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

export class ObjectHandleCache {
  private readonly handles = new Map<string, Handle>();

  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly run: SessionRunner,
  ) {}

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
   * once and retries with a different handle.
   */
  async withObject<T>(
    cacheKey: string,
    template: pkcs11js.Template,
    missing: () => KmsError,
    fn: (handle: Handle) => Promise<T>,
  ): Promise<T> {
    const handle = await this.find(cacheKey, template);
    if (handle === undefined) throw missing();
    try {
      return await fn(handle);
    } catch (error) {
      if (!(error instanceof KmsError) || error.kind !== 'internal') throw error;
      this.handles.delete(cacheKey);
      const again = await this.find(cacheKey, template);
      if (again === undefined || again.equals(handle)) throw error;
      return fn(again);
    }
  }
}
