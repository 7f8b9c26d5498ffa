import { z } from 'zod';
import { invalidParameter } from '../../domain/errors.js';
import { keyArn } from '../../domain/ids.js';
import { parseRotationInterval } from '../../domain/rotation.js';
import { parseTags } from '../../domain/tags.js';
import { pageKeys } from '../../services/key-catalog.js';
import {
  MAX_PENDING_WINDOW_DAYS,
  MIN_PENDING_WINDOW_DAYS,
  cancelKeyDeletion,
  disableKey,
  enableKey,
  scheduleKeyDeletion,
  setDeletionProtection,
  updateKeyDescription,
} from '../../services/key-lifecycle.js';
import { findKey } from '../../services/key-lookup.js';
import { type CreateKeyInput, createKey } from '../../services/keys.js';
import { createKeyOnce, idempotencyToken, parseClientToken } from '../../services/idempotency.js';
import { p } from '../params.js';
import { keyMetadata } from '../presenters.js';
import { defineAction } from './action.js';

/** The `KeyId` parameter: a key id, an alias or an ARN (services/key-lookup.ts). */
const keyIdParam = () => p.string(2048);

export const keyActions = {
  CreateKey: defineAction({
    access: 'admin',
    params: z.object({
      DKMSInstanceId: p.optionalString(64),
      KeySpec: p.optionalString(64),
      KeyUsage: p.enum(['ENCRYPT/DECRYPT', 'SIGN/VERIFY', 'GENERATE/VERIFY_MAC']).optional(),
      Origin: p.enum(['Aliyun_KMS', 'EXTERNAL']).optional(),
      ProtectionLevel: p.enum(['SOFTWARE', 'HSM']).optional(),
      Description: p.optionalString(8192),
      EnableAutomaticRotation: p.boolean().optional(),
      RotationInterval: p.optionalString(32),
      KeyStorageMechanism: p.enum(['HsmInternal', 'HsmEncryptedDatabase']).optional(),
      Policy: p.optionalString(32_768),
      Tags: p.optionalString(65_536),
      // Issue 19: a retry with the same token answers the key the first attempt made (services/idempotency.ts).
      ClientToken: p.optionalString(64),
    }),
    async handle(params, { kms, caller, idempotencyKey }) {
      const token = clientTokenOf(params.ClientToken || undefined, idempotencyKey);
      const input: CreateKeyInput = {
        instanceId: params.DKMSInstanceId || undefined,
        keySpec: params.KeySpec || undefined,
        keyUsage: params.KeyUsage,
        origin: params.Origin,
        protectionLevel: params.ProtectionLevel,
        description: params.Description,
        enableAutomaticRotation: params.EnableAutomaticRotation,
        rotationIntervalSeconds: params.RotationInterval ? parseRotationInterval(params.RotationInterval) : undefined,
        keyStorageMechanism: params.KeyStorageMechanism,
        tags: params.Tags ? parseTags(params.Tags) : undefined,
      };
      const key = token ? await createKeyOnce(kms.deps, input, caller, idempotencyToken(token, params)) : await createKey(kms.deps, input, caller);
      const { DeletionProtection: _dp, DeletionProtectionDescription: _dpd, ...metadata } = keyMetadata(key, kms.deps.config);
      return { KeyMetadata: metadata };
    },
  }),

  DescribeKey: defineAction({
    access: 'read',
    params: z.object({ KeyId: p.string(2048) }),
    async handle(params, { kms, caller }) {
      const key = await findKey(kms.deps, params.KeyId, caller);
      return { KeyMetadata: keyMetadata(key, kms.deps.config) };
    },
  }),

  ListKeys: defineAction({
    access: 'read',
    params: z.object({ PageNumber: p.pageNumber(), PageSize: p.pageSize(10, 100), Filters: p.optionalString(8192) }),
    async handle(params, { kms, caller }) {
      const { items, total } = await pageKeys(
        kms.deps,
        { pageNumber: params.PageNumber, pageSize: params.PageSize, filters: params.Filters },
        caller,
      );
      const { region, accountId } = kms.deps.config;
      return {
        PageNumber: params.PageNumber,
        PageSize: params.PageSize,
        TotalCount: total,
        // §6: lists travel in their wrapper objects, or the SDK silently drops them.
        Keys: { Key: items.map((k) => ({ KeyId: k.id, KeyArn: keyArn(region, accountId, k.id) })) },
      };
    },
  }),

  EnableKey: defineAction({
    access: 'admin',
    params: z.object({ KeyId: keyIdParam() }),
    async handle(params, { kms, caller }) {
      await enableKey(kms.deps, params.KeyId, caller);
      return {};
    },
  }),

  DisableKey: defineAction({
    access: 'admin',
    params: z.object({ KeyId: keyIdParam() }),
    async handle(params, { kms, caller }) {
      await disableKey(kms.deps, params.KeyId, caller);
      return {};
    },
  }),

  ScheduleKeyDeletion: defineAction({
    access: 'admin',
    params: z.object({
      KeyId: keyIdParam(),
      // Required in the current API (older docs defaulted it); 7–366 days (§3.1).
      PendingWindowInDays: p.integer(MIN_PENDING_WINDOW_DAYS, MAX_PENDING_WINDOW_DAYS),
    }),
    async handle(params, { kms, caller }) {
      await scheduleKeyDeletion(kms.deps, params.KeyId, params.PendingWindowInDays, caller);
      return {};
    },
  }),

  CancelKeyDeletion: defineAction({
    access: 'admin',
    params: z.object({ KeyId: keyIdParam() }),
    async handle(params, { kms, caller }) {
      await cancelKeyDeletion(kms.deps, params.KeyId, caller);
      return {};
    },
  }),

  SetDeletionProtection: defineAction({
    access: 'admin',
    params: z.object({
      EnableDeletionProtection: p.boolean(),
      ProtectedResourceArn: p.string(2048).optional(),
      KeyId: keyIdParam().optional(),
      DeletionProtectionDescription: p.optionalString(1024),
    }),
    async handle(params, { kms, caller }) {
      await setDeletionProtection(
        kms.deps,
        {
          enable: params.EnableDeletionProtection,
          keyId: params.KeyId,
          protectedResourceArn: params.ProtectedResourceArn,
          description: params.DeletionProtectionDescription,
        },
        caller,
      );
      return {};
    },
  }),

  UpdateKeyDescription: defineAction({
    access: 'admin',
    // An empty Description clears it; a missing one is MissingParameter.
    params: z.object({ KeyId: keyIdParam(), Description: z.string().max(8192, 'It must be at most 8192 characters.') }),
    async handle(params, { kms, caller }) {
      await updateKeyDescription(kms.deps, params.KeyId, params.Description, caller);
      return {};
    },
  }),
};

/** The client token of a creating call: `ClientToken` or the `x-kms-idempotency-key` header (the same, when both are sent). */
function clientTokenOf(parameter: string | undefined, header: string | undefined): string | undefined {
  const fromParameter = parameter === undefined ? undefined : parseClientToken(parameter, 'ClientToken');
  const fromHeader = header === undefined ? undefined : parseClientToken(header, 'x-kms-idempotency-key');
  if (fromParameter !== undefined && fromHeader !== undefined && fromParameter !== fromHeader) {
    throw invalidParameter('ClientToken', 'ClientToken and the x-kms-idempotency-key header differ: send one token.');
  }
  return fromParameter ?? fromHeader;
}
