import { z } from 'zod';
import { parseRotationInterval } from '../../domain/rotation.js';
import { parseTags } from '../../domain/tags.js';
import { loadKey } from '../../services/key-lookup.js';
import { createKey } from '../../services/keys.js';
import { p } from '../params.js';
import { keyMetadata } from '../presenters.js';
import { defineAction } from './action.js';

export const keyActions = {
  CreateKey: defineAction({
    access: 'admin',
    params: z.object({
      DKMSInstanceId: p.optionalString(64),
      KeySpec: p.optionalString(64),
      KeyUsage: p.enum(['ENCRYPT/DECRYPT', 'SIGN/VERIFY']).optional(),
      Origin: p.enum(['Aliyun_KMS', 'EXTERNAL']).optional(),
      ProtectionLevel: p.enum(['SOFTWARE', 'HSM']).optional(),
      Description: p.optionalString(8192),
      EnableAutomaticRotation: p.boolean().optional(),
      RotationInterval: p.optionalString(32),
      KeyStorageMechanism: p.enum(['HsmInternal', 'HsmEncryptedDatabase']).optional(),
      Policy: p.optionalString(32_768),
      Tags: p.optionalString(65_536),
    }),
    async handle(params, { kms, caller }) {
      const key = await createKey(
        kms.deps,
        {
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
        },
        caller,
      );
      const { DeletionProtection: _dp, DeletionProtectionDescription: _dpd, ...metadata } = keyMetadata(key, kms.deps.config);
      return { KeyMetadata: metadata };
    },
  }),

  DescribeKey: defineAction({
    access: 'read',
    params: z.object({ KeyId: p.string(2048) }),
    async handle(params, { kms, caller }) {
      const key = await loadKey(kms.deps, kms.deps.db, params.KeyId, caller);
      return { KeyMetadata: keyMetadata(key, kms.deps.config) };
    },
  }),
};
