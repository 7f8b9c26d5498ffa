import type { Logger } from 'pino';
import type { MetadataChange } from '../services/repositories.js';
import type { Db } from '../store/db.js';

/**
 * The reader of the cache-change journal (migration 014): every node reads the changes committed
 * over the last `windowMs` about every `intervalMs` and applies each one it has not applied yet.
 *
 * Redis pub/sub tells the other nodes at once, but only if the writer lives to publish: a node
 * killed between its COMMIT and its PUBLISH left the others serving a disabled key, or an
 * alias's old key, until the cache's maximum age (found by a multi-process probe: ~55 s). The
 * journal row is written in the write's own transaction, so it exists exactly when the change
 * does; this reader bounds that case to about `intervalMs`.
 *
 * Sequence numbers are taken at INSERT, commits can land in another order, so the reader does
 * not keep a high-water mark: it reads a time window (each row's `at` is stamped right before its
 * COMMIT) and remembers the sequence numbers it applied within it. A journal it cannot read (the
 * store down) is tried again on the next tick; applying a change twice only drops an entry twice.
 */
export class ChangeJournalReader {
  /** Sequence numbers applied, with when they were first seen (ms), kept for twice the window. */
  private readonly applied = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private polls = 0;
  private running: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly apply: (changes: readonly MetadataChange[]) => void,
    /** This node's id: its own rows were applied when written. */
    private readonly origin: string,
    private readonly logger: Pick<Logger, 'debug' | 'warn'>,
    private readonly options: { intervalMs: number; windowMs: number; retentionMs: number },
  ) {}

  start(): void {
    if (this.options.intervalMs <= 0 || this.timer) return;
    this.timer = setInterval(() => {
      this.running ??= this.poll().finally(() => (this.running = undefined));
    }, this.options.intervalMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One read of the window; applies what is new. Never rejects. */
  async poll(): Promise<void> {
    let rows: Array<{ seq: string; changes: MetadataChange[] }>;
    try {
      ({ rows } = await this.db.query<{ seq: string; changes: MetadataChange[] }>(
        "SELECT seq, changes FROM cache_changes WHERE at > clock_timestamp() - $1 * interval '1 millisecond' AND origin IS DISTINCT FROM $2 ORDER BY seq",
        [this.options.windowMs, this.origin],
      ));
    } catch (error) {
      this.logger.debug({ err: error instanceof Error ? error.message : String(error) }, 'cache-change journal not readable; next tick');
      return;
    }
    const now = Date.now();
    for (const row of rows) {
      if (this.applied.has(row.seq)) continue;
      this.applied.set(row.seq, now);
      if (Array.isArray(row.changes)) this.apply(row.changes);
    }
    for (const [seq, seenAt] of this.applied) if (now - seenAt > 2 * this.options.windowMs) this.applied.delete(seq);
    // Pruned now and then by whichever node gets there (a DELETE of nothing costs an index probe).
    if (++this.polls % 60 === 0) {
      await this.db
        .query("DELETE FROM cache_changes WHERE at < clock_timestamp() - $1 * interval '1 millisecond'", [this.options.retentionMs])
        .catch(() => undefined);
    }
  }
}
