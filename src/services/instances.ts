import { instanceNotFound, invalidParameter, unavailable } from '../domain/errors.js';
import type { KeyStorageMechanism } from '../domain/key.js';
import { newInstanceId } from '../domain/ids.js';
import { appendAuditEvents, recordAudit } from '../store/audit.js';
import { withTransaction } from '../store/db.js';
import {
  type Instance,
  type InstanceType,
  getInstance,
  getVersionsUsed,
  insertInstance,
  listInstanceUsage,
  listInstances,
  lockInstance,
  updateInstanceLimits,
} from '../store/instances.js';
import type { Caller, ServiceDeps } from './context.js';
import { assertAdmin, visibleInstanceIds } from './permissions.js';
import { instancesQpsUsed } from './throttling.js';

export interface CreateInstanceInput {
  type: InstanceType;
  keyQuota: number;
  qps: number;
  name?: string | undefined;
  /**
   * Hardware instances: how their keys hold material by default (Alibaba's
   * KeyStorageMechanism). `HsmInternal` (default): a token object per version, for small
   * instances; `HsmEncryptedDatabase`: version keys wrapped under the HSM master key in
   * Postgres, for 100,000+ versions.
   */
  keyStorageMechanism?: KeyStorageMechanism | undefined;
}

export async function createInstance(deps: ServiceDeps, input: CreateInstanceInput, caller: Caller): Promise<Instance> {
  assertAdmin(caller);
  if (!Number.isInteger(input.keyQuota) || input.keyQuota < 0) throw invalidParameter('KeyQuota');
  if (!Number.isInteger(input.qps) || input.qps <= 0) throw invalidParameter('Qps');
  if (input.keyStorageMechanism !== undefined && input.type !== 'HSM') {
    throw invalidParameter('KeyStorageMechanism', 'Only hardware (HSM) instances take a key storage mechanism.');
  }
  // Refused up front rather than at the first CreateKey: wrapped storage needs the token's master key.
  if (input.keyStorageMechanism === 'HsmEncryptedDatabase' && !(await deps.hsm.hasMasterWrappingKey())) {
    throw unavailable('The HSM has no master wrapping key, which HsmEncryptedDatabase storage needs: run `kms hsm init` (it needs the SO PIN) first.');
  }
  const id = newInstanceId();
  return withTransaction(deps.db, async (tx) => {
    const instance = await insertInstance(tx, {
      id,
      name: input.name ?? id,
      type: input.type,
      keyQuota: input.keyQuota,
      qps: input.qps,
      keyStorage: input.type === 'HSM' ? (input.keyStorageMechanism ?? 'HsmInternal') : 'Database',
    });
    await recordAudit(tx, { requestId: caller.requestId, accessKeyId: caller.accessKeyId, sourceIp: caller.sourceIp, action: 'CreateKmsInstance', detail: { instanceId: id, type: input.type, keyStorage: instance.keyStorage } });
    return instance;
  });
}

/**
 * GetKmsInstance. A key-user limited to some instances sees only those; another instance is
 * answered exactly as a missing one (issue 13: no existence oracle).
 * @throws Forbidden.DKMSInstanceNotFound (403)
 */
export async function describeInstance(deps: ServiceDeps, instanceId: string, caller: Caller): Promise<Instance> {
  const visible = visibleInstanceIds(caller);
  if (visible !== null && !visible.includes(instanceId)) throw instanceNotFound();
  const instance = await getInstance(deps.db, instanceId);
  if (!instance) throw instanceNotFound();
  return instance;
}

export async function pageInstances(
  deps: ServiceDeps,
  page: { pageNumber: number; pageSize: number },
  caller: Caller,
  type?: InstanceType,
): Promise<{ items: Instance[]; total: number }> {
  // Filtered in the query, so a limited key-user's pages and TotalCount are right.
  return listInstances(
    deps.db,
    { offset: (page.pageNumber - 1) * page.pageSize, limit: page.pageSize },
    { type, ids: visibleInstanceIds(caller) },
  );
}

/** `kms instance update`: raising or lowering limits; a quota below what is used is refused. */
export async function updateInstance(
  deps: ServiceDeps,
  instanceId: string,
  limits: { keyQuota?: number | undefined; qps?: number | undefined },
  caller: Caller,
): Promise<Instance> {
  assertAdmin(caller);
  return withTransaction(deps.db, async (tx) => {
    // Appended first (rolled back with a refusal): the audit chain head is locked before the
    // instance row, the order every version insert keeps (store/quota.ts), so they never deadlock.
    await appendAuditEvents(tx, [
      { requestId: caller.requestId, accessKeyId: caller.accessKeyId, sourceIp: caller.sourceIp, action: 'UpdateKmsInstance', detail: { instanceId, ...limits } },
    ]);
    const current = await lockInstance(tx, instanceId);
    if (!current) throw instanceNotFound();
    // The counter the quota check and GetKmsInstanceQuotaInfos read, under the same lock.
    const used = await getVersionsUsed(tx, current.id);
    if (limits.keyQuota !== undefined && limits.keyQuota < used) {
      throw invalidParameter('KeyQuota', `The instance already uses ${used} key versions.`);
    }
    const updated = await updateInstanceLimits(tx, instanceId, limits);
    if (!updated) throw instanceNotFound();
    return updated;
  });
}

/** GetKmsInstanceQuotaInfos resource types (alibaba-api.md §3.6, §5.11). */
export const QUOTA_RESOURCE_TYPES = ['key', 'secret', 'qps', 'vpc'] as const;
export type QuotaResourceType = (typeof QUOTA_RESOURCE_TYPES)[number];

export interface QuotaInfo {
  resourceType: QuotaResourceType;
  resourceQuota: number;
  usedQuantity: number;
}

/**
 * GetKmsInstanceQuotaInfos. `key`: every key version consumes one unit (§5.11), and the used
 * quantity is counted from the versions themselves, so it always agrees with Postgres.
 * `qps`: the instance's QPS spec and the crypto calls it admitted over the last second, across
 * every process (services/throttling.ts). This service has no secrets and no VPC bindings (quota 0).
 * @throws Forbidden.DKMSInstanceNotFound (403), also for an instance the caller may not see
 */
export async function instanceQuotaInfos(
  deps: ServiceDeps,
  instanceId: string,
  caller: Caller,
  resourceType?: QuotaResourceType,
): Promise<QuotaInfo[]> {
  const { instance, versionsUsed, qpsUsed } = await instanceQuota(deps, instanceId, caller);
  const all: QuotaInfo[] = [
    { resourceType: 'key', resourceQuota: instance.keyQuota, usedQuantity: versionsUsed },
    { resourceType: 'secret', resourceQuota: 0, usedQuantity: 0 },
    { resourceType: 'qps', resourceQuota: instance.qps, usedQuantity: qpsUsed },
    { resourceType: 'vpc', resourceQuota: 0, usedQuantity: 0 },
  ];
  return resourceType ? all.filter((q) => q.resourceType === resourceType) : all;
}

/** An instance with what it uses of its quotas: versions (of the key quota) and QPS over the last second. */
export interface InstanceQuota {
  instance: Instance;
  versionsUsed: number;
  qpsUsed: number;
}

/**
 * One instance's quota use (GetKmsInstance, GetKmsInstanceQuotaInfos): the version count the
 * quota check reads, and the QPS the rate limiter admitted over the last second.
 * @throws Forbidden.DKMSInstanceNotFound (403), also for an instance the caller may not see
 */
export async function instanceQuota(deps: ServiceDeps, instanceId: string, caller: Caller): Promise<InstanceQuota> {
  const instance = await describeInstance(deps, instanceId, caller);
  const [versionsUsed, [qpsUsed = 0]] = await Promise.all([getVersionsUsed(deps.db, instance.id), instancesQpsUsed(deps, [instance.id])]);
  return { instance, versionsUsed, qpsUsed };
}

/**
 * Every instance the caller may see with its quota use, in one query and one Redis round trip
 * (`kms quota`, the metrics scrape, the dashboard).
 */
export async function quotaOverview(deps: ServiceDeps, caller: Caller): Promise<InstanceQuota[]> {
  const visible = visibleInstanceIds(caller);
  const usage = (await listInstanceUsage(deps.db)).filter((u) => visible === null || visible.includes(u.instance.id));
  const qps = await instancesQpsUsed(deps, usage.map((u) => u.instance.id));
  return usage.map((u, i) => ({ instance: u.instance, versionsUsed: u.versionsUsed, qpsUsed: qps[i] ?? 0 }));
}

/**
 * GetDefaultKmsInstance. Alibaba does not define it beyond `{DefaultKmsInstanceId}`; here the
 * default instance is the oldest SOFTWARE instance the caller may see (the one the
 * quickstart creates), or `''` when there is none.
 */
export async function defaultInstanceId(deps: ServiceDeps, caller: Caller): Promise<string> {
  const { items } = await pageInstances(deps, { pageNumber: 1, pageSize: 1000 }, caller, 'SOFTWARE');
  return items[0]?.id ?? '';
}
