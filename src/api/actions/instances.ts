import { z } from 'zod';
import { QUOTA_RESOURCE_TYPES, defaultInstanceId, instanceQuota, instanceQuotaInfos, pageInstances } from '../../services/instances.js';
import { p } from '../params.js';
import { kmsInstance } from '../presenters.js';
import { defineAction } from './action.js';

export const instanceActions = {
  ListKmsInstances: defineAction({
    access: 'read',
    params: z.object({ PageNumber: p.pageNumber(), PageSize: p.pageSize(20, 100), Filters: p.optionalString(4096) }),
    async handle(params, { kms, caller }) {
      const { items, total } = await pageInstances(kms.deps, { pageNumber: params.PageNumber, pageSize: params.PageSize }, caller);
      const { region, accountId } = kms.deps.config;
      return {
        KmsInstances: {
          KmsInstance: items.map((i) => ({ KmsInstanceId: i.id, KmsInstanceArn: `acs:kms:${region}:${accountId}:keystore/${i.id}` })),
        },
        PageNumber: params.PageNumber,
        PageSize: params.PageSize,
        TotalCount: total,
      };
    },
  }),

  GetKmsInstance: defineAction({
    access: 'read',
    params: z.object({ KmsInstanceId: p.string(64) }),
    async handle(params, { kms, caller }) {
      const { instance, versionsUsed, qpsUsed } = await instanceQuota(kms.deps, params.KmsInstanceId, caller);
      // hsm-kms extensions next to Alibaba's totals (KeyNum, Spec): what is used of them.
      return { KmsInstance: { ...kmsInstance(instance, kms.deps.config), KeyQuotaUsed: versionsUsed, QpsUsed: qpsUsed } };
    },
  }),

  GetKmsInstanceQuotaInfos: defineAction({
    access: 'read',
    params: z.object({ KmsInstanceId: p.string(64), ResourceType: p.enum(QUOTA_RESOURCE_TYPES).optional() }),
    async handle(params, { kms, caller }) {
      const infos = await instanceQuotaInfos(kms.deps, params.KmsInstanceId, caller, params.ResourceType);
      return {
        KmsInstanceId: params.KmsInstanceId,
        // §3.6: a bare array here, unlike every other list of this API.
        KmsInstanceQuotaInfos: infos.map((q) => ({
          ResourceType: q.resourceType,
          ResourceQuota: q.resourceQuota,
          UsedQuantity: q.usedQuantity,
        })),
      };
    },
  }),

  GetDefaultKmsInstance: defineAction({
    access: 'read',
    params: z.object({}),
    async handle(_params, { kms, caller }) {
      return { DefaultKmsInstanceId: await defaultInstanceId(kms.deps, caller) };
    },
  }),
};
