import { randomFillSync } from 'node:crypto';

/** AES-GCM's 96-bit nonce (NIST SP 800-38D §8.2.2: random IVs of exactly this length). */
export const GCM_IV_BYTES = 12;

/**
 * Random AES-GCM IVs drawn from a CSPRNG pool filled 4 KiB at a time: one `randomBytes(12)`
 * per Encrypt cost ~2.5 µs of CPU (OpenSSL's RAND per call), a copy out of the pool ~0.2 µs.
 * Every IV is still fresh CSPRNG output, each handed out once: the pool is refilled before any
 * byte of it would be used twice, and each IV is a copy (no caller holds a view of the pool).
 * Per process: node:cluster workers are separate processes with their own pools.
 */
const POOL_BYTES = 4096 - (4096 % GCM_IV_BYTES);
const pool = Buffer.alloc(POOL_BYTES);
let offset = POOL_BYTES;

/** A fresh random 12-byte IV, owned by the caller. */
export function nextGcmIv(): Buffer {
  if (offset + GCM_IV_BYTES > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const iv = Buffer.allocUnsafe(GCM_IV_BYTES);
  pool.copy(iv, 0, offset, offset + GCM_IV_BYTES);
  // Wipe what was handed out, so the pool holds only IVs not yet used.
  pool.fill(0, offset, offset + GCM_IV_BYTES);
  offset += GCM_IV_BYTES;
  return iv;
}
