import { z } from 'zod';
import { describeInstance, pageInstances } from '../../services/instances.js';
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
      const instance = await describeInstance(kms.deps, params.KmsInstanceId, caller);
      return { KmsInstance: kmsInstance(instance, kms.deps.config) };
    },
  }),
};
