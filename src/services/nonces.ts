import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { KmsError, unavailable } from '../domain/errors.js';
import type { Admission, NonceToClaim, RateWindows } from './rate-windows.js';

const nonceUsed = () => new KmsError('SignatureNonceUsed', 'Specified signature nonce was used already.');

const signedBeforeReplayCache = () =>
  new KmsError('IllegalTimestamp', 'The request was signed before the replay cache was last restarted; sign it again with the current time.');

/**
 * The replay cache's epoch (issue 19 item 4a): when the Redis that holds the nonces began
 * holding them, in wall-clock ms. Written once (SET NX, no TTL) by the first claim that finds
 * it missing: a Redis restarted empty or flushed has lost every nonce and this key with them.
 */
export const NONCE_EPOCH_KEY = 'kms:nonce-epoch';

/** KEYS[1] the nonce (SET NX EX ARGV[1]), KEYS[2] the epoch: {1 claimed | 0 used, epoch}. */
const CLAIM_SCRIPT = `
local claimed = redis.call('SET', KEYS[1], '1', 'EX', ARGV[1], 'NX') and 1 or 0
return {claimed, redis.call('GET', KEYS[2])}
`;

type RedisWithNonceScript = Redis & {
  kmsNonceClaim(keys: number, nonceKey: string, epochKey: string, ttlSeconds: number): Promise<[number, string | null]>;
};

/**
 * Replay protection: a SignatureNonce may be used once per access key within the window a
 * timestamp is accepted (±15 min), held in Redis so it holds across API nodes. The lifetime is
 * a Redis TTL, so it runs on wall time even under KMS_CLOCK=manual, as the timestamp check does.
 */
export class NonceRegistry {
  constructor(
    private readonly client: Redis,
    private readonly windowSeconds: number,
    private readonly logger?: Pick<Logger, 'warn'>,
  ) {
    // defineCommand sends EVALSHA (EVAL once on NOSCRIPT): one round trip per claim.
    if (!('kmsNonceClaim' in client)) client.defineCommand('kmsNonceClaim', { lua: CLAIM_SCRIPT });
  }

  private get redis(): RedisWithNonceScript {
    return this.client as RedisWithNonceScript;
  }

  /**
   * @param signedAt the request's Timestamp / x-acs-date
   * @throws SignatureNonceUsed (400) for a replay; IllegalTimestamp (400) for a request signed
   *   before the replay cache's epoch; ServiceUnavailableTemporary when Redis is down.
   */
  async claim(accessKeyId: string, nonce: string, signedAt: Date): Promise<void> {
    await this.claimKey(nonceKey(accessKeyId, nonce), signedAt);
  }

  /**
   * A verified request's nonce, to be claimed once: alone (`claim`), or by a crypto call together
   * with its instance's QPS admission (`admitWith`), so a crypto call makes one Redis round trip
   * for both (services/throttling.ts). The edge claims it before any other action runs.
   */
  pending(accessKeyId: string, nonce: string, signedAt: Date): PendingNonce {
    return new PendingNonce(this, { key: nonceKey(accessKeyId, nonce), ttlSeconds: this.windowSeconds, epochKey: NONCE_EPOCH_KEY }, signedAt);
  }

  /** @internal PendingNonce's claim: the nonce and the epoch in one script. */
  async claimKey(key: string, signedAt: Date): Promise<void> {
    let answer: [number, string | null];
    try {
      answer = await this.redis.kmsNonceClaim(2, key, NONCE_EPOCH_KEY, this.windowSeconds);
    } catch {
      throw unavailable('The replay cache is not reachable.');
    }
    if (answer[0] !== 1) throw nonceUsed();
    await this.assertAfterEpoch(answer[1], signedAt);
  }

  /**
   * A replay cache restarted empty (or flushed) has forgotten every nonce: a request captured
   * before that would be accepted again. So a request signed before the cache's epoch is
   * refused (IllegalTimestamp; the client signs again). The epoch is read in the same script
   * as the claim, so both come from the same Redis. What it cannot refuse: a request signed
   * before the restart by a client whose clock ran ahead of the server's, with a Timestamp
   * after the epoch (README, "Operations: failure behaviour").
   * @param epoch as read with the claim; null: this Redis has none yet (it is set now)
   * @internal
   */
  async assertAfterEpoch(epoch: string | null, signedAt: Date): Promise<void> {
    if (epoch === null) {
      try {
        const started = await this.redisStartedAt();
        if ((await this.redis.set(NONCE_EPOCH_KEY, String(started), 'NX')) === 'OK') {
          this.logger?.warn(
            { epoch: new Date(started).toISOString() },
            'the replay cache is new (a Redis started empty, restarted empty or flushed): requests signed before it started are refused',
          );
        }
        epoch = (await this.redis.get(NONCE_EPOCH_KEY)) ?? String(started);
      } catch {
        throw unavailable('The replay cache is not reachable.');
      }
    }
    // Timestamps have whole seconds, and Redis gives its uptime in whole seconds (so the epoch
    // may read up to 1 s late): a request of a second before the epoch's is refused; one of the
    // epoch's own second is served, so a fresh Redis (a quickstart's) does not refuse its first
    // clients. The price: a request captured in the second of an empty restart can be replayed
    // once in that second (README, "Operations: failure behaviour").
    if (signedAt.getTime() < Math.floor(Number(epoch) / 1000) * 1000) throw signedBeforeReplayCache();
  }

  /**
   * When this Redis started (its clock, ms): the epoch of a replay cache found without one.
   * Not the first claim's time, so that a deployment's first requests after a fresh Redis are
   * not refused; a FLUSHALL without a restart is not seen as a new epoch (README).
   */
  private async redisStartedAt(): Promise<number> {
    const info = await this.redis.info('server');
    const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? Number.NaN);
    const nowMs = field('server_time_usec') / 1000;
    const uptimeMs = field('uptime_in_seconds') * 1000;
    return Number.isFinite(nowMs - uptimeMs) ? Math.floor(nowMs - uptimeMs) : Date.now();
  }
}

function nonceKey(accessKeyId: string, nonce: string): string {
  return `kms:nonce:${accessKeyId}:${nonce}`;
}

export class PendingNonce {
  private claimed = false;

  constructor(
    private readonly registry: NonceRegistry,
    private readonly nonce: NonceToClaim,
    private readonly signedAt: Date,
  ) {}

  get isClaimed(): boolean {
    return this.claimed;
  }

  /** Claims the nonce unless already claimed. @throws SignatureNonceUsed, IllegalTimestamp (400); ServiceUnavailableTemporary */
  async claim(): Promise<void> {
    if (this.claimed) return;
    this.claimed = true;
    await this.registry.claimKey(this.nonce.key, this.signedAt);
  }

  /**
   * One call in `window` under `limit`, claiming the nonce in the same round trip unless it
   * is claimed already (a ReEncrypt admits two keys).
   * @throws SignatureNonceUsed (400) for a replay, IllegalTimestamp (400, see assertAfterEpoch); ServiceUnavailableTemporary
   */
  async admitWith(windows: RateWindows, window: string, limit: number): Promise<Exclude<Admission, 'replay'>> {
    if (this.claimed) return notReplay(await windows.admit(window, limit));
    this.claimed = true;
    const { admission, epoch } = await windows.admitClaiming(window, limit, this.nonce);
    const checked = notReplay(admission);
    await this.registry.assertAfterEpoch(epoch, this.signedAt);
    return checked;
  }
}

function notReplay(admission: Admission): Exclude<Admission, 'replay'> {
  if (admission === 'replay') throw nonceUsed();
  return admission;
}
