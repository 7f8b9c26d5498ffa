/**
 * PGlite has one backend. The gate admits one client connection at a time to it, for a whole
 * *round*: from its first message until the backend is idle again (ReadyForQuery 'I', no
 * transaction open). pgbouncer's transaction pooling follows the same rule; it is what keeps
 * one connection's Parse/Bind/Execute from landing between another's, which answered
 * `Encrypt(A)` with key B when messages were queued one by one (issue 13).
 *
 * Waiters are admitted first come, first served.
 */
export class RoundGate<T> {
  private holder: T | undefined;
  private readonly waiting: Array<{ who: T; admit: () => void; refuse: (error: Error) => void }> = [];

  /** Who holds the gate now. */
  get current(): T | undefined {
    return this.holder;
  }

  /** How many connections wait. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves once `who` holds the gate (at once if it already does). */
  acquire(who: T): Promise<void> {
    if (this.holder === who) return Promise.resolve();
    if (this.holder === undefined) {
      this.holder = who;
      return Promise.resolve();
    }
    return new Promise((admit, refuse) => this.waiting.push({ who, admit, refuse }));
  }

  /** Hands the gate to the next waiter; a no-op unless `who` holds it. */
  release(who: T): void {
    if (this.holder !== who) return;
    const next = this.waiting.shift();
    this.holder = next?.who;
    next?.admit();
  }

  /** Takes `who` out of the queue (it disconnected while waiting); its acquire() rejects. */
  withdraw(who: T, reason: Error): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const entry = this.waiting[i]!;
      if (entry.who !== who) continue;
      this.waiting.splice(i, 1);
      entry.refuse(reason);
    }
  }
}
