import type { Key } from '../domain/key.js';
import type { KeyVersion } from '../domain/key-version.js';
import type { Queryable } from './db.js';
import { getKeysWithPrimaryVersion } from './keys.js';

type Found = { key: Key; primaryVersion: KeyVersion | undefined } | undefined;

/** Most ids one query carries; more wait for the next batch. */
const MAX_BATCH = 256;

/**
 * Key reads (with their primary versions) batched: the ids asked for in one turn of the event
 * loop go to Postgres in one `= ANY($1)` query, as Redis commands are auto-pipelined. With
 * 100,000 keys in random order nearly every crypto action is a key's first use on this node,
 * and each query's socket write is what costs (README: Key storage mechanisms).
 */
export class KeyBatchReads {
  private pending = new Map<string, Array<{ resolve: (found: Found) => void; reject: (error: unknown) => void }>>();
  private scheduled = false;

  constructor(private readonly db: Queryable) {}

  read(id: string): Promise<Found> {
    return new Promise((resolve, reject) => {
      const waiters = this.pending.get(id);
      if (waiters) waiters.push({ resolve, reject });
      else this.pending.set(id, [{ resolve, reject }]);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = new Map<string, Array<{ resolve: (found: Found) => void; reject: (error: unknown) => void }>>();
    for (const [id, waiters] of this.pending) {
      if (batch.size >= MAX_BATCH) break;
      batch.set(id, waiters);
    }
    for (const id of batch.keys()) this.pending.delete(id);
    if (this.pending.size > 0) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
    getKeysWithPrimaryVersion(this.db, [...batch.keys()]).then(
      (found) => {
        for (const [id, waiters] of batch) for (const w of waiters) w.resolve(found.get(id));
      },
      (error: unknown) => {
        for (const waiters of batch.values()) for (const w of waiters) w.reject(error);
      },
    );
  }
}
