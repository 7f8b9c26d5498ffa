import { describe, expect, it } from 'vitest';
import { GCM_IV_BYTES, nextGcmIv } from '../../src/hsm/gcm-iv.js';

describe('nextGcmIv (the pooled AES-GCM IVs)', () => {
  it('hands out 12-byte IVs that never repeat, across several refills of the pool', () => {
    const seen = new Set<string>();
    // 4,096-byte pool: 341 IVs per fill, so 2,000 draws cross five refills.
    for (let i = 0; i < 2_000; i++) {
      const iv = nextGcmIv();
      expect(iv.length).toBe(GCM_IV_BYTES);
      seen.add(iv.toString('hex'));
    }
    expect(seen.size).toBe(2_000);
  });

  it('gives each caller its own bytes: changing one IV changes no other, and a refill changes none', () => {
    const first = nextGcmIv();
    const second = nextGcmIv();
    const secondKept = Buffer.from(second);
    first.fill(0xff);
    expect(second.equals(secondKept)).toBe(true);
    for (let i = 0; i < 1_000; i++) nextGcmIv();
    expect(second.equals(secondKept)).toBe(true);
  });
});
