import { z } from 'zod';
import { isoSeconds } from '../../domain/dates.js';
import { parseRotationInterval } from '../../domain/rotation.js';
import { describeKeyVersion, pageKeyVersions } from '../../services/key-versions.js';
import { createKeyVersion, updateRotationPolicy } from '../../services/rotation.js';
import type { KeyVersion } from '../../domain/key-version.js';
import { encryptionUsageWarning } from '../../domain/version-usage.js';
import { p } from '../params.js';
import { defineAction } from './action.js';

/** alibaba-api.md §3.3: a version is {KeyId, KeyVersionId, CreationDate}. */
const keyVersion = (v: KeyVersion) => ({ KeyId: v.keyId, KeyVersionId: v.id, CreationDate: isoSeconds(v.createdAt) });

/**
 * ListKeyVersions / DescribeKeyVersion add the version's state as an hsm-kms extension
 * (`KeyVersionState`: `Enabled` | `PendingRotation`): the 2016-01-20 API has no version
 * state (§3.3), but seed 002's console shows imported new material as "ローテーション保留中";
 * the SDKs ignore fields they do not know.
 */
const keyVersionWithState = (v: KeyVersion) => ({ ...keyVersion(v), KeyVersionState: v.state });

/**
 * DescribeKeyVersion's usage extension (hsm-kms): `EncryptionCount`, the AES-GCM encryptions
 * the version has made (flushed every KMS_USAGE_FLUSH_MS), and from 2^31 of them
 * `EncryptionCountWarning`, the signal to rotate before the 2^32 random-IV bound
 * (domain/version-usage.ts).
 */
function encryptionUsage(count: number): { EncryptionCount: number; EncryptionCountWarning?: string } {
  const warning = encryptionUsageWarning(count);
  return warning === undefined ? { EncryptionCount: count } : { EncryptionCount: count, EncryptionCountWarning: warning };
}

/** Seed 002 / alibaba-api.md §3.3: versions and rotation. */
export const versionActions = {
  UpdateRotationPolicy: defineAction({
    access: 'admin',
    params: z.object({
      KeyId: p.string(2048),
      EnableAutomaticRotation: p.boolean(),
      RotationInterval: p.optionalString(32),
    }),
    async handle(params, { kms, caller }) {
      // Syntax and the 7–365-day bounds are checked before the key is looked up.
      const interval = params.RotationInterval ? parseRotationInterval(params.RotationInterval) : undefined;
      await updateRotationPolicy(kms.deps, params.KeyId, { enable: params.EnableAutomaticRotation, intervalSeconds: interval }, caller);
      return {};
    },
  }),

  CreateKeyVersion: defineAction({
    access: 'admin',
    params: z.object({ KeyId: p.string(2048) }),
    async handle(params, { kms, caller }) {
      const version = await createKeyVersion(kms.deps, params.KeyId, caller);
      return { KeyVersion: keyVersion(version) };
    },
  }),

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
        KeyVersions: { KeyVersion: items.map(keyVersionWithState) },
      };
    },
  }),

  DescribeKeyVersion: defineAction({
    access: 'read',
    params: z.object({ KeyId: p.string(2048), KeyVersionId: p.string(128) }),
    async handle(params, { kms, caller }) {
      const { version, encryptionCount } = await describeKeyVersion(kms.deps, params.KeyId, params.KeyVersionId, caller);
      return { KeyVersion: { ...keyVersionWithState(version), ...encryptionUsage(encryptionCount) } };
    },
  }),
};
