import { z } from 'zod';
import { reEncrypt } from '../../services/re-encrypt.js';
import { p, serviceInput } from '../params.js';
import { defineAction } from './action.js';

/** ReEncrypt (alibaba-api.md §3.4; docs/api.md "ReEncrypt"). */
export const reEncryptActions = {
  ReEncrypt: defineAction({
    access: 'use',
    params: z.object({
      CiphertextBlob: p.string(65_536),
      SourceEncryptionContext: p.optionalString(8192),
      DestinationKeyId: p.string(2048),
      DestinationEncryptionContext: p.optionalString(8192),
      SourceKeyId: p.optionalString(2048),
      SourceKeyVersionId: p.optionalString(128),
      SourceEncryptionAlgorithm: p.optionalString(64),
      DryRun: p.boolean().optional(),
    }),
    async handle(params, { kms, caller }) {
      const r = await reEncrypt(kms.deps, serviceInput(params), caller);
      return { KeyId: r.keyId, KeyVersionId: r.keyVersionId, CiphertextBlob: r.ciphertextBlob };
    },
  }),
};
