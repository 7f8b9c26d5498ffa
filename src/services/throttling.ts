import type { AccountRateLimitSettings, KmsConfig } from '../config.js';
import { KmsError, unavailable } from '../domain/errors.js';
import { type Key, type KeyAction, type UsageAction, assertAllowed, assertUsageAllows, isAllowed } from '../domain/key.js';
import type { Caller, ServiceDeps } from './context.js';
import type { RateSample, RateWindows } from './rate-windows.js';

/** alibaba-api.md §5.11: what a throttled call gets (HTTP 429; the SDKs raise it as a throttling error). */
export const throttled = () => new KmsError('Rejected.Throttling', 'QPS Limit Exceeded');

/** The rate window of an instance's crypto calls (its QPS spec). */
export const instanceWindow = (instanceId: string) => `instance:${instanceId}`;

/**
 * The one admission of a crypto call against its instance's QPS spec, made where each crypto
 * use case has loaded and checked its key (the instance is known only then: for Decrypt it
 * comes from the ciphertext's version). The instance comes from the repositories (cached
 * in steady state), and the request's nonce, still pending for a crypto action (api/rpc.ts),
 * is claimed in the same script: one Redis round trip for both, no Postgres query. Default
 * keys (no instance) have no instance limit: their call claims the nonce alone.
 * @throws Rejected.Throttling (429) over the spec; SignatureNonceUsed (400) for a replay;
 *   ServiceUnavailableTemporary when Redis is down
 */
export async function admitCryptoCall(deps: Pick<ServiceDeps, 'repositories' | 'rates'>, key: Pick<Key, 'instanceId'>, caller: Caller): Promise<void> {
  const instance = key.instanceId === null ? undefined : await deps.repositories.instances.byId(key.instanceId);
  // Default keys; and a key always belongs to an existing instance (foreign key).
  if (!instance) return caller.nonce?.claim();
  const window = instanceWindow(instance.id);
  const admission = caller.nonce ? await caller.nonce.admitWith(deps.rates, window, instance.qps) : await deps.rates.admit(window, instance.qps);
  if (admission !== 'admitted') throw throttled();
}

/**
 * The checks every crypto call makes of the key it is about to use, in one order for every
 * action: the key's usage allows the action (400 Rejected.UnsupportedOperation), then its state
 * does (409 Rejected.<State>), then the instance's QPS spec admits the call (429, with the
 * request's nonce claimed). A refused key never takes a unit of the instance's QPS.
 *
 * The key usually comes from this node's cache, and another node's change reaches it over
 * Redis pub/sub. The request's Redis round trip (the nonce claim) orders it after every
 * invalidation published before the client sent it — Redis writes a PUBLISH's message to the
 * subscribers before it answers the publisher, and this node reads the subscriber socket
 * first — so the state is checked again after that round trip: a key disabled, enabled,
 * scheduled for deletion or stripped of its material on one node is honoured by the next
 * request on every other node, not only within the channel's bound. In steady state the
 * second look is a cache hit on the same entry.
 */
export async function admitKeyUse(
  deps: Pick<ServiceDeps, 'repositories' | 'rates'>,
  key: Pick<Key, 'id' | 'instanceId' | 'keySpec' | 'keyUsage' | 'state'>,
  action: KeyAction & UsageAction,
  caller: Caller,
): Promise<void> {
  assertUsageAllows(action, key);
  if (!isAllowed(action, key.state)) {
    // Refused by what may be a stale entry: pass the barrier first, then judge the key as it is now.
    await caller.nonce?.claim();
    const current = (await deps.repositories.keys.byId(key.id)) ?? key;
    assertAllowed(action, current.state);
    await admitCryptoCall(deps, current, caller);
    return;
  }
  await admitCryptoCall(deps, key, caller);
  const current = await deps.repositories.keys.byId(key.id);
  if (current && current !== key) assertAllowed(action, current.state);
}

/** Per-account rate classes of Alibaba's shared gateway (alibaba-api.md §5.11). */
export const RATE_CLASSES = ['symmetricCrypto', 'asymmetricCrypto', 'reEncrypt', 'createKey', 'read', 'listTags', 'write'] as const;
export type RateClass = (typeof RATE_CLASSES)[number];

/** Alibaba's shared-gateway figures per account, the defaults of KMS_ACCOUNT_RATE_LIMITS=on. */
export const SHARED_GATEWAY_QPS: Readonly<Record<RateClass, number>> = {
  symmetricCrypto: 1_000,
  asymmetricCrypto: 200,
  reEncrypt: 750,
  createKey: 10,
  read: 50,
  listTags: 300,
  write: 30,
};

const SYMMETRIC_CRYPTO = new Set([
  'Encrypt',
  'Decrypt',
  'GenerateDataKey',
  'GenerateDataKeyWithoutPlaintext',
  'GenerateAndExportDataKey',
  'ExportDataKey',
  'GenerateMac',
  'VerifyMac',
  'GetRandomPassword',
]);
const ASYMMETRIC_CRYPTO = new Set(['AsymmetricSign', 'AsymmetricVerify', 'AsymmetricEncrypt', 'AsymmetricDecrypt', 'GetPublicKey']);

/** Which class an action is limited by: crypto by kind, then reads (Describe/List/Get), then writes. */
export function rateClassOf(action: string): RateClass {
  if (SYMMETRIC_CRYPTO.has(action)) return 'symmetricCrypto';
  if (ASYMMETRIC_CRYPTO.has(action)) return 'asymmetricCrypto';
  if (action === 'ReEncrypt') return 'reEncrypt';
  if (action === 'CreateKey') return 'createKey';
  if (action === 'ListResourceTags' || action === 'ListTagResources') return 'listTags';
  if (/^(Describe|List|Get)/.test(action)) return 'read';
  return 'write';
}

/**
 * Per-account limits by class (KMS_ACCOUNT_RATE_LIMITS=on; off by default). This service has
 * one account (KMS_ACCOUNT_ID), so the limits hold for all its access keys together, across
 * every process. Checked at the edge once the action is known, before it runs.
 */
export class AccountRateLimits {
  /** null: off. */
  private readonly limits: Readonly<Record<RateClass, number>> | null;

  constructor(
    private readonly windows: RateWindows,
    private readonly accountId: string,
    settings: KmsConfig['accountRateLimits'],
  ) {
    this.limits = settings.enabled ? accountRateLimitTable(settings.perClass) : null;
  }

  /** The limit per class in force (null: off). */
  get table(): Readonly<Record<RateClass, number>> | null {
    return this.limits;
  }

  get enabled(): boolean {
    return this.limits !== null;
  }

  /** @throws Rejected.Throttling (429) over the class's limit */
  async admit(action: string): Promise<void> {
    if (!this.limits) return;
    const rateClass = rateClassOf(action);
    if ((await this.windows.admit(`account:${this.accountId}:${rateClass}`, this.limits[rateClass])) !== 'admitted') throw throttled();
  }
}

/** Alibaba's figures, with each class the operator set replaced. */
export function accountRateLimitTable(perClass: AccountRateLimitSettings): Record<RateClass, number> {
  const table = { ...SHARED_GATEWAY_QPS };
  for (const rateClass of RATE_CLASSES) table[rateClass] = perClass[rateClass] ?? table[rateClass];
  return table;
}

/** QPS used over the last second per instance (what GetKmsInstanceQuotaInfos reports). @throws ServiceUnavailableTemporary when Redis is down */
export async function instancesQpsUsed(deps: Pick<ServiceDeps, 'rates'>, instanceIds: readonly string[]): Promise<number[]> {
  try {
    return await deps.rates.usedOverLastSecond(instanceIds.map(instanceWindow));
  } catch {
    throw unavailable('The rate limiter is not reachable.');
  }
}

/**
 * An instance's crypto calls per second over the last `seconds` (at most an hour): admitted
 * and throttled, oldest first, across every process (the dashboard's chart).
 */
export function instanceRateHistory(deps: Pick<ServiceDeps, 'rates'>, instanceId: string, seconds: number): Promise<RateSample[]> {
  return deps.rates.history(instanceWindow(instanceId), seconds);
}
