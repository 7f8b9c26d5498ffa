import { instanceNotFound, invalidParameter } from '../domain/errors.js';
import { newInstanceId } from '../domain/ids.js';
import { recordAudit } from '../store/audit.js';
import { withTransaction } from '../store/db.js';
import {
  type Instance,
  type InstanceType,
  countVersions,
  getInstance,
  insertInstance,
  listInstances,
  lockInstance,
  updateInstanceLimits,
} from '../store/instances.js';
import type { Caller, ServiceDeps } from './context.js';
import { assertAdmin, visibleInstanceIds } from './permissions.js';

export interface CreateInstanceInput {
  type: InstanceType;
  keyQuota: number;
  qps: number;
  name?: string | undefined;
}

export async function createInstance(deps: ServiceDeps, input: CreateInstanceInput, caller: Caller): Promise<Instance> {
  assertAdmin(caller);
  if (!Number.isInteger(input.keyQuota) || input.keyQuota < 0) throw invalidParameter('KeyQuota');
  if (!Number.isInteger(input.qps) || input.qps <= 0) throw invalidParameter('Qps');
  const id = newInstanceId();
  const instance = await insertInstance(deps.db, {
    id,
    name: input.name ?? id,
    type: input.type,
    keyQuota: input.keyQuota,
    qps: input.qps,
    keyStorage: input.type === 'HSM' ? 'HsmInternal' : 'Database',
  });
  await recordAudit(deps.db, { accessKeyId: caller.accessKeyId, action: 'CreateKmsInstance', detail: { instanceId: id, type: input.type } });
  return instance;
}

/**
 * GetKmsInstance. A key-user limited to some instances sees only those; another instance is
 * answered exactly as a missing one (issue 13: no existence oracle).
 * @throws Forbidden.DKMSInstanceNotFound (404)
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
    const current = await lockInstance(tx, instanceId);
    if (!current) throw instanceNotFound();
    // The same number the quota check and GetKmsInstanceQuotaInfos read, under the same lock.
    const used = await countVersions(tx, current.id);
    if (limits.keyQuota !== undefined && limits.keyQuota < used) {
      throw invalidParameter('KeyQuota', `The instance already uses ${used} key versions.`);
    }
    const updated = await updateInstanceLimits(tx, instanceId, limits);
    if (!updated) throw instanceNotFound();
    await recordAudit(tx, { accessKeyId: caller.accessKeyId, action: 'UpdateKmsInstance', detail: { instanceId, ...limits } });
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
 * This service has no secrets and no VPC bindings (quota 0), and does not meter QPS yet
 * (used 0 against the instance's QPS spec).
 * @throws Forbidden.DKMSInstanceNotFound (404), also for an instance the caller may not see
 */
export async function instanceQuotaInfos(
  deps: ServiceDeps,
  instanceId: string,
  caller: Caller,
  resourceType?: QuotaResourceType,
): Promise<QuotaInfo[]> {
  const instance = await describeInstance(deps, instanceId, caller);
  const all: QuotaInfo[] = [
    { resourceType: 'key', resourceQuota: instance.keyQuota, usedQuantity: await countVersions(deps.db, instance.id) },
    { resourceType: 'secret', resourceQuota: 0, usedQuantity: 0 },
    { resourceType: 'qps', resourceQuota: instance.qps, usedQuantity: 0 },
    { resourceType: 'vpc', resourceQuota: 0, usedQuantity: 0 },
  ];
  return resourceType ? all.filter((q) => q.resourceType === resourceType) : all;
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
