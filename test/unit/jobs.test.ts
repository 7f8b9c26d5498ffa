import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { invalidKeyMaterial, unavailable } from '../../src/domain/errors.js';
import { materialExpiryJobId } from '../../src/jobs/material-expiry.js';
import { finalOnClientError } from '../../src/jobs/queues.js';

describe('job error policy (STYLE.md, Errors)', () => {
  it('a client KmsError is final: UnrecoverableError, with the code in the message', async () => {
    const processor = finalOnClientError(async () => {
      throw invalidKeyMaterial();
    });
    const error = await processor().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnrecoverableError);
    expect((error as Error).message).toBe('InvalidKeyMaterial: key material is invalid.');
  });

  it('an unavailable KmsError or any other error is rethrown as is (BullMQ retries it with backoff)', async () => {
    const down = unavailable('The HSM is not reachable (unwrap).');
    await expect(finalOnClientError(async () => Promise.reject(down))()).rejects.toBe(down);
    const other = new Error('boom');
    await expect(finalOnClientError(async () => Promise.reject(other))()).rejects.toBe(other);
    await expect(finalOnClientError(async (n: number) => n + 1)(1)).resolves.toBe(2);
  });
});

describe('material expiry job ids', () => {
  it('are deterministic per key and expiry, and free of ":" (BullMQ refuses it in custom ids)', () => {
    const at = new Date('2030-01-01T00:00:00Z');
    expect(materialExpiryJobId('key-hzzabc', at)).toBe(materialExpiryJobId('key-hzzabc', new Date(at)));
    expect(materialExpiryJobId('key-hzzabc', at)).not.toBe(materialExpiryJobId('key-hzzabc', new Date(at.getTime() + 1000)));
    expect(materialExpiryJobId('key-hzzabc', at)).not.toContain(':');
  });
});
