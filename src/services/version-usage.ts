import type { Logger } from 'pino';
import type { Db } from '../store/db.js';
import { addEncryptionCounts } from '../store/version-usage.js';

/** Where an encryption under a version is counted (services/crypto.ts `sealWith`). */
export interface EncryptionCounter {
  /** Counts one AES-GCM encryption under the version: in memory, no I/O. */
  countEncryption(versionId: string): void;
}

/**
 * Usage per key version, batched: each process counts encryptions in memory and adds them to
 * Postgres every `flushIntervalMs` and on close, in one statement for all versions
 * (store/version-usage.ts). A failed flush keeps its counts for the next one; a crash loses at
 * most one interval of counts (usage is a rotation signal, not a ledger).
 */
export class BatchedEncryptionCounter implements EncryptionCounter {
  private pending = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    flushIntervalMs: number,
  ) {
    this.timer = setInterval(() => void this.flush(), flushIntervalMs);
    this.timer.unref();
  }

  countEncryption(versionId: string): void {
    this.pending.set(versionId, (this.pending.get(versionId) ?? 0) + 1);
  }

  /** Writes what was counted so far; concurrent calls share one write. */
  flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flushing;
    await this.flush();
  }

  private async write(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    try {
      await addEncryptionCounts(this.db, batch);
    } catch (error) {
      // Kept for the next flush: counts are added, so merging back loses nothing.
      for (const [id, n] of batch) this.pending.set(id, (this.pending.get(id) ?? 0) + n);
      this.logger.warn({ err: error instanceof Error ? error.message : String(error), versions: batch.size }, 'version usage flush failed; kept for the next one');
    }
  }
}
