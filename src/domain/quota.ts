import { limitExceeded } from './errors.js';

/**
 * Seed 002: "each key version consumes one unit of the instance's key quota" (V1, V2, V3 use
 * 3). The one rule every path that adds versions asks, with the count read under the
 * instance's row lock (store/quota.ts).
 * @throws Rejected.LimitExceeded
 */
export function assertVersionQuota(instance: { id: string; keyQuota: number }, used: number, adding = 1): void {
  if (used + adding > instance.keyQuota) {
    throw limitExceeded(`instance ${instance.id} has used ${used} of ${instance.keyQuota} key versions`);
  }
}
