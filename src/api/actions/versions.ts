import { z } from 'zod';
import { isoSeconds } from '../../domain/dates.js';
import { describeKeyVersion, pageKeyVersions } from '../../services/key-versions.js';
import type { KeyVersion } from '../../store/versions.js';
import { p } from '../params.js';
import { defineAction } from './action.js';

/** alibaba-api.md §3.3: a version is only {KeyId, KeyVersionId, CreationDate}; there is no version state. */
const keyVersion = (v: KeyVersion) => ({ KeyId: v.keyId, KeyVersionId: v.id, CreationDate: isoSeconds(v.createdAt) });

export const versionActions = {
  ListKeyVersions: defineAction({
    access: 'read',
    params: z.object({ KeyId: p.string(2048), PageNumber: p.pageNumber(), PageSize: p.pageSize(10, 100) }),
    async handle(params, { kms, caller }) {
      const { items, total } = await pageKeyVersions(
        kms.deps,
        params.KeyId,
        { pageNumber: params.PageNumber, pageSize: params.PageSize },
        caller,
      );
      return {
        PageNumber: params.PageNumber,
        PageSize: params.PageSize,
        TotalCount: total,
        KeyVersions: { KeyVersion: items.map(keyVersion) },
      };
    },
  }),

  DescribeKeyVersion: defineAction({
    access: 'read',
    params: z.object({ KeyId: p.string(2048), KeyVersionId: p.string(128) }),
    async handle(params, { kms, caller }) {
      const version = await describeKeyVersion(kms.deps, params.KeyId, params.KeyVersionId, caller);
      return { KeyVersion: keyVersion(version) };
    },
  }),
};
