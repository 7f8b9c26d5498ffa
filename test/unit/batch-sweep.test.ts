import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { runBatchSweep } from '../../src/jobs/batch-sweep.js';

/** The sweeps' loop (rotation, key deletion): batches until nothing is due; one failing key never stops the rest. */
describe('runBatchSweep', () => {
  const logger = pino({ level: 'silent' });

  it('goes through every batch, records each outcome, and carries on past a failing key', async () => {
    const due = Array.from({ length: 7 }, (_, i) => `key-${i}`);
    const listed: number[] = [];
    const result = await runBatchSweep({
      list: async (limit, exclude) => {
        listed.push(exclude.length);
        return due.filter((id) => !exclude.includes(id)).slice(0, limit);
      },
      idOf: (id) => id,
      apply: async (id) => {
        if (id === 'key-1' || id === 'key-5') throw new Error('store away');
        return id === 'key-3' ? ('stale' as const) : ('rotated' as const);
      },
      logger,
      what: 'test sweep',
      batchSize: 3,
    });
    expect(result.failed).toEqual(['key-1', 'key-5']);
    expect(result.outcomes).toEqual({ rotated: ['key-0', 'key-2', 'key-4', 'key-6'], stale: ['key-3'] });
    // Three batches of at most three, then an empty one; a failed key is not retried within the sweep.
    expect(listed).toEqual([0, 3, 6, 7]);
  });
});
