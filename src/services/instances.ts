import { instanceNotFound, invalidParameter, noPermission } from '../domain/errors.js';
import { newInstanceId } from '../domain/ids.js';
import { recordAudit } from '../store/audit.js';
import { withTransaction } from '../store/db.js';
import {
  type Instance,
  type InstanceType,
  getInstance,
  insertInstance,
  listInstances,
  lockInstance,
  updateInstanceLimits,
} from '../store/instances.js';
import type { Caller, ServiceDeps } from './context.js';

export interface CreateInstanceInput {
  type: InstanceType;
  keyQuota: number;
  qps: number;
  name?: string | undefined;
}

export async function createInstance(deps: ServiceDeps, input: CreateInstanceInput, caller: Caller): Promise<Instance> {
  if (caller.role !== 'admin') throw noPermission();
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

/** A key-user limited to some instances sees only those. */
function assertVisible(caller: Caller, instanceId: string): void {
  if (caller.role === 'admin' || caller.instanceIds === null) return;
  if (!caller.instanceIds.includes(instanceId)) throw noPermission();
}

export async function describeInstance(deps: ServiceDeps, instanceId: string, caller: Caller): Promise<Instance> {
  assertVisible(caller, instanceId);
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
  const result = await listInstances(deps.db, { offset: (page.pageNumber - 1) * page.pageSize, limit: page.pageSize }, type);
  if (caller.role === 'admin' || caller.instanceIds === null) return result;
  const allowed = caller.instanceIds;
  const items = result.items.filter((i) => allowed.includes(i.id));
  return { items, total: items.length };
}

/** `kms instance update`: raising or lowering limits; a quota below what is used is refused. */
export async function updateInstance(
  deps: ServiceDeps,
  instanceId: string,
  limits: { keyQuota?: number | undefined; qps?: number | undefined },
  caller: Caller,
): Promise<Instance> {
  if (caller.role !== 'admin') throw noPermission();
  return withTransaction(deps.db, async (tx) => {
    const current = await lockInstance(tx, instanceId);
    if (!current) throw instanceNotFound();
    if (limits.keyQuota !== undefined && limits.keyQuota < current.usedKeys) {
      throw invalidParameter('KeyQuota', `The instance already uses ${current.usedKeys} keys.`);
    }
    const updated = await updateInstanceLimits(tx, instanceId, limits);
    if (!updated) throw instanceNotFound();
    await recordAudit(tx, { accessKeyId: caller.accessKeyId, action: 'UpdateKmsInstance', detail: { instanceId, ...limits } });
    return updated;
  });
}
