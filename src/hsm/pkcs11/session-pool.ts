import pkcs11js from 'pkcs11js';
import { unavailable } from '../../domain/errors.js';
import type { HsmSessionStats } from '../hsm.js';
import { isSessionLost } from './errors.js';

type Handle = pkcs11js.Handle;

/**
 * A fixed-size pool of read/write sessions on one slot. A session serves one operation at a
 * time (PKCS#11 sessions are not re-entrant: an active C_EncryptInit blocks others), so
 * concurrency equals the pool size. A session that the token reports lost is replaced.
 */
export class SessionPool {
  private readonly idle: Handle[] = [];
  private readonly waiters: Array<(session: Handle) => void> = [];
  private opened = 0;
  private closed = false;

  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private slot: Handle,
    private readonly size: number,
  ) {}

  /** Runs `fn` with an exclusive session, returning it to the pool afterwards. */
  async use<T>(fn: (session: Handle) => Promise<T> | T): Promise<T> {
    const session = await this.acquire();
    let lost = false;
    try {
      return await fn(session);
    } catch (error) {
      lost = isSessionLost(error);
      throw error;
    } finally {
      this.release(session, lost);
    }
  }

  private acquire(): Promise<Handle> {
    if (this.closed) return Promise.reject(unavailable('The HSM session pool is closed.'));
    const session = this.idle.pop();
    if (session) return Promise.resolve(session);
    if (this.opened < this.size) {
      this.opened += 1;
      try {
        return Promise.resolve(this.open());
      } catch (error) {
        this.opened -= 1;
        return Promise.reject(error);
      }
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private open(): Handle {
    return this.p11.C_OpenSession(this.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  }

  private release(session: Handle, lost: boolean): void {
    let next = session;
    if (lost) {
      try {
        this.p11.C_CloseSession(session);
      } catch {
        // Already gone; that is why we are replacing it.
      }
      try {
        next = this.open();
      } catch {
        this.opened -= 1;
        return;
      }
    }
    const waiter = this.waiters.shift();
    if (waiter) waiter(next);
    else this.idle.push(next);
  }

  /**
   * Closes the idle sessions (the token lost them all: C_CloseAllSessions, a device error);
   * new ones are opened on demand. Sessions in use are replaced as their calls fail.
   */
  discardIdle(): void {
    for (const session of this.idle.splice(0)) {
      this.opened -= 1;
      try {
        this.p11.C_CloseSession(session);
      } catch {
        // Already gone.
      }
    }
  }

  /**
   * Forgets every session without closing any (a module restart ended them all, and their
   * numbers may be reused by other sessions now); new ones are opened on `slot`. Only while no
   * session is in use (module.ts restarts only then).
   */
  abandon(slot: Handle): void {
    this.idle.splice(0);
    this.opened = 0;
    this.slot = slot;
  }

  /** How busy the pool is (metrics): its size, sessions open, in use, and callers waiting for one. */
  stats(): HsmSessionStats {
    return { size: this.size, open: this.opened, inUse: this.opened - this.idle.length, waiting: this.waiters.length };
  }

  /** Closes idle sessions; callers must have drained in-flight work. */
  close(): void {
    this.closed = true;
    for (const session of this.idle.splice(0)) {
      try {
        this.p11.C_CloseSession(session);
      } catch {
        // Closing is best effort at shutdown.
      }
    }
  }
}
