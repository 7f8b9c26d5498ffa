import { z } from 'zod';
import { WRAPPING_ALGORITHMS, WRAPPING_KEY_SPECS } from '../../domain/byok.js';
import { isoSeconds } from '../../domain/dates.js';
import { IMPORT_TYPES, importKeyMaterial } from '../../services/import.js';
import { getParametersForImport } from '../../services/import-params.js';
import { deleteKeyMaterial } from '../../services/key-material.js';
import { p, serviceInput } from '../params.js';
import { defineAction } from './action.js';

/** Seed 000 / alibaba-api.md §3.2: GetParametersForImport, ImportKeyMaterial, DeleteKeyMaterial. */
export const importActions = {
  GetParametersForImport: defineAction({
    access: 'admin',
    params: z.object({
      KeyId: p.string(2048),
      WrappingKeySpec: p.enum(WRAPPING_KEY_SPECS),
      WrappingAlgorithm: p.enum(WRAPPING_ALGORITHMS),
    }),
    async handle(params, { kms, caller }) {
      const result = await getParametersForImport(kms.deps, serviceInput(params), caller);
      return {
        KeyId: result.keyId,
        ImportToken: result.importToken,
        PublicKey: result.publicKeyDer.toString('base64'),
        TokenExpireTime: isoSeconds(result.tokenExpireTime),
      };
    },
  }),

  ImportKeyMaterial: defineAction({
    access: 'admin',
    params: z.object({
      KeyId: p.string(2048),
      // An RSA-2048 ciphertext is 344 base64 characters; leave room for whitespace.
      EncryptedKeyMaterial: p.string(4096),
      ImportToken: p.string(4096),
      KeyMaterialExpireUnix: p.integer(0, 253_402_300_799).optional(),
      // hsm-kms extension (AWS KMS's ImportType): NEW_KEY_MATERIAL starts a BYOK rotation (seed 002).
      ImportType: p.enum(IMPORT_TYPES).optional(),
    }),
    async handle(params, { kms, caller }) {
      await importKeyMaterial(kms.deps, serviceInput(params), caller);
      return {};
    },
  }),

  DeleteKeyMaterial: defineAction({
    access: 'admin',
    params: z.object({ KeyId: p.string(2048) }),
    async handle(params, { kms, caller }) {
      await deleteKeyMaterial(kms.deps, { keyId: params.KeyId }, caller);
      return {};
    },
  }),
};
