/**
 * The sweeps' shared loop (STYLE.md: one failing key never stops a batch): list what is due in
 * batches, apply each item on its own, and record failures for the next sweep instead of
 * throwing. Items tried once are excluded from the following batches, so a failing item is not
 * retried in a loop within one sweep.
 */
import type { Logger } from 'pino';

export interface SweepResult<Outcome extends string> {
  /** Key ids by what their attempt returned. */
  outcomes: Partial<Record<Outcome, string[]>>;
  /** Key ids whose attempt threw; the next sweep (or the job's retry) tries again. */
  failed: string[];
}

export interface BatchSweep<Item, Outcome extends string> {
  /** What is due, at most `limit`, skipping the ids already tried in this sweep. */
  list(limit: number, excludeIds: readonly string[]): Promise<Item[]>;
  /** The id an item is reported (and excluded) by. */
  idOf(item: Item): string;
  apply(item: Item): Promise<Outcome>;
  logger: Logger;
  /** For the log line of a failed item. */
  what: string;
  batchSize?: number;
}

export async function runBatchSweep<Item, Outcome extends string>(sweep: BatchSweep<Item, Outcome>): Promise<SweepResult<Outcome>> {
  const result: SweepResult<Outcome> = { outcomes: {}, failed: [] };
  const tried: string[] = [];
  for (;;) {
    const due = await sweep.list(sweep.batchSize ?? 100, tried);
    if (due.length === 0) return result;
    for (const item of due) {
      const id = sweep.idOf(item);
      tried.push(id);
      try {
        const outcome = await sweep.apply(item);
        (result.outcomes[outcome] ??= []).push(id);
      } catch (error) {
        result.failed.push(id);
        // Ids and the KmsError message only (never material).
        sweep.logger.warn({ keyId: id, err: error instanceof Error ? error.message : String(error) }, `${sweep.what} failed; the next sweep retries`);
      }
    }
  }
}
