import { describe, expect, it } from 'vitest';
import { JOB_QUEUES, queueEntries } from '../../src/jobs/registry.js';

/** The one queue registry (issue 14 §3): every entry is a complete queue module. The e2e side (workers really started) is test/e2e/job-registry.test.ts. */
describe('the queue registry', () => {
  it('lists every queue once, each with a name, job names, a scheduler, a processor and a concurrency', () => {
    const entries = queueEntries();
    expect(entries.map(([key]) => key).sort()).toEqual(Object.keys(JOB_QUEUES).sort());
    const names = entries.map(([, d]) => d.name);
    expect(new Set(names).size).toBe(names.length);
    for (const [key, definition] of entries) {
      expect(definition.name, key).toMatch(/^[a-z][a-z-]*$/);
      expect(definition.jobNames.length, key).toBeGreaterThan(0);
      expect(typeof definition.schedule, key).toBe('function');
      expect(typeof definition.processor, key).toBe('function');
      expect(definition.concurrency, key).toBeGreaterThanOrEqual(1);
    }
  });

  it('has the concerns DESIGN.md names: material expiry, rotation, key deletion, wrapping pool, reconciler, sweeper, and the audit digests', () => {
    expect(queueEntries().map(([, d]) => d.name).sort()).toEqual(['audit-digest', 'key-deletion', 'material-expiry', 'reconciler', 'rotation', 'sweeper', 'wrapping-pool']);
  });
});
