import type { Redis } from 'ioredis';
import { KmsError, unavailable } from '../domain/errors.js';

/**
 * Replay protection: a SignatureNonce may be used once per access key within the window a
 * timestamp is accepted (±15 min), held in Redis so it holds across API nodes. The lifetime is
 * a Redis TTL, so it runs on wall time even under KMS_CLOCK=manual, as the timestamp check does.
 */
export class NonceRegistry {
  constructor(
    private readonly redis: Redis,
    private readonly windowSeconds: number,
  ) {}

  /** @throws SignatureNonceUsed (400) for a replay; ServiceUnavailableTemporary when Redis is down. */
  async claim(accessKeyId: string, nonce: string): Promise<void> {
    let result: string | null;
    try {
      result = await this.redis.set(`kms:nonce:${accessKeyId}:${nonce}`, '1', 'EX', this.windowSeconds, 'NX');
    } catch {
      throw unavailable('The replay cache is not reachable.');
    }
    if (result !== 'OK') throw new KmsError('SignatureNonceUsed', 'Specified signature nonce was used already.');
  }
}
