import { z } from 'zod';
import { aliasArn } from '../../domain/ids.js';
import { createAlias, deleteAlias, pageAliases, pageAliasesOfKey, updateAlias } from '../../services/aliases.js';
import type { Alias } from '../../store/aliases.js';
import type { KmsConfig } from '../../config.js';
import { p } from '../params.js';
import { defineAction } from './action.js';

const aliasName = () => p.string(255);

/** ListAliases / ListAliasesByKeyId entry (alibaba-api.md §3.5). */
const aliasEntry = (a: Alias, config: Pick<KmsConfig, 'region' | 'accountId'>) => ({
  AliasName: a.name,
  AliasArn: aliasArn(config.region, config.accountId, a.name),
  KeyId: a.keyId,
});

const aliasPage = (
  page: { items: Alias[]; total: number },
  params: { PageNumber: number; PageSize: number },
  config: Pick<KmsConfig, 'region' | 'accountId'>,
) => ({
  PageNumber: params.PageNumber,
  PageSize: params.PageSize,
  TotalCount: page.total,
  Aliases: { Alias: page.items.map((a) => aliasEntry(a, config)) },
});

export const aliasActions = {
  CreateAlias: defineAction({
    access: 'admin',
    params: z.object({ AliasName: aliasName(), KeyId: p.string(2048) }),
    async handle(params, { kms, caller }) {
      await createAlias(kms.deps, { aliasName: params.AliasName, keyId: params.KeyId }, caller);
      return {};
    },
  }),

  UpdateAlias: defineAction({
    access: 'admin',
    params: z.object({ AliasName: aliasName(), KeyId: p.string(2048) }),
    async handle(params, { kms, caller }) {
      await updateAlias(kms.deps, { aliasName: params.AliasName, keyId: params.KeyId }, caller);
      return {};
    },
  }),

  DeleteAlias: defineAction({
    access: 'admin',
    params: z.object({ AliasName: aliasName() }),
    async handle(params, { kms, caller }) {
      await deleteAlias(kms.deps, params.AliasName, caller);
      return {};
    },
  }),

  ListAliases: defineAction({
    access: 'read',
    params: z.object({ PageNumber: p.pageNumber(), PageSize: p.pageSize(10, 100) }),
    async handle(params, { kms, caller }) {
      const page = await pageAliases(kms.deps, { pageNumber: params.PageNumber, pageSize: params.PageSize }, caller);
      return aliasPage(page, params, kms.deps.config);
    },
  }),

  ListAliasesByKeyId: defineAction({
    access: 'read',
    params: z.object({ KeyId: p.string(2048), PageNumber: p.pageNumber(), PageSize: p.pageSize(10, 100) }),
    async handle(params, { kms, caller }) {
      const page = await pageAliasesOfKey(kms.deps, params.KeyId, { pageNumber: params.PageNumber, pageSize: params.PageSize }, caller);
      return aliasPage(page, params, kms.deps.config);
    },
  }),
};
