import { z } from 'zod';
import { decrypt, encrypt } from '../../services/crypto.js';
import { p, serviceInput } from '../params.js';
import { defineAction } from './action.js';

export const cryptoActions = {
  Encrypt: defineAction({
    access: 'use',
    params: z.object({
      KeyId: p.string(2048),
      Plaintext: z.string().min(1, 'It must not be empty.'),
      EncryptionContext: p.optionalString(8192),
      DryRun: p.boolean().optional(),
    }),
    async handle(params, { kms, caller }) {
      const result = await encrypt(kms.deps, serviceInput(params), caller);
      return { KeyId: result.keyId, KeyVersionId: result.keyVersionId, CiphertextBlob: result.ciphertextBlob };
    },
  }),

  Decrypt: defineAction({
    access: 'use',
    params: z.object({
      CiphertextBlob: p.string(65_536),
      EncryptionContext: p.optionalString(8192),
      DryRun: p.boolean().optional(),
    }),
    async handle(params, { kms, caller }) {
      const result = await decrypt(kms.deps, serviceInput(params), caller);
      return { KeyId: result.keyId, KeyVersionId: result.keyVersionId, Plaintext: result.plaintext };
    },
  }),
};
