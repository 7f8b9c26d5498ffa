import { z } from 'zod';
import { DATA_KEY_SPECS, EXPORT_KEY_SPECS, MAX_DATA_KEY_BYTES, MIN_DATA_KEY_BYTES } from '../../domain/data-keys.js';
import { WRAPPING_ALGORITHMS } from '../../domain/byok.js';
import { exportDataKey, generateAndExportDataKey, generateDataKey, generateDataKeyWithoutPlaintext } from '../../services/data-keys.js';
import { p, serviceInput } from '../params.js';
import { defineAction } from './action.js';

/** Data keys for envelope encryption (alibaba-api.md §3.4; docs/api.md "Data keys"). */

const dataKeyFields = {
  KeyId: p.string(2048),
  KeySpec: p.enum(DATA_KEY_SPECS).optional(),
  NumberOfBytes: p.integer(MIN_DATA_KEY_BYTES, MAX_DATA_KEY_BYTES).optional(),
  EncryptionContext: p.optionalString(8192),
  DryRun: p.boolean().optional(),
};

/** The caller's RSA public key an export wraps under (the same names as GetParametersForImport, §3.2). */
const exportFields = {
  PublicKeyBlob: p.string(4096),
  WrappingAlgorithm: p.enum(WRAPPING_ALGORITHMS),
  WrappingKeySpec: p.enum(EXPORT_KEY_SPECS),
};

export const dataKeyActions = {
  GenerateDataKey: defineAction({
    access: 'use',
    params: z.object(dataKeyFields),
    async handle(params, { kms, caller }) {
      const r = await generateDataKey(kms.deps, serviceInput(params), caller);
      return { KeyId: r.keyId, KeyVersionId: r.keyVersionId, Plaintext: r.plaintext, CiphertextBlob: r.ciphertextBlob };
    },
  }),

  GenerateDataKeyWithoutPlaintext: defineAction({
    access: 'use',
    params: z.object(dataKeyFields),
    async handle(params, { kms, caller }) {
      const r = await generateDataKeyWithoutPlaintext(kms.deps, serviceInput(params), caller);
      return { KeyId: r.keyId, KeyVersionId: r.keyVersionId, CiphertextBlob: r.ciphertextBlob };
    },
  }),

  GenerateAndExportDataKey: defineAction({
    access: 'use',
    params: z.object({ ...dataKeyFields, ...exportFields }),
    async handle(params, { kms, caller }) {
      const r = await generateAndExportDataKey(kms.deps, serviceInput(params), caller);
      return { KeyId: r.keyId, KeyVersionId: r.keyVersionId, CiphertextBlob: r.ciphertextBlob, ExportedDataKey: r.exportedDataKey };
    },
  }),

  ExportDataKey: defineAction({
    access: 'use',
    params: z.object({
      CiphertextBlob: p.string(65_536),
      EncryptionContext: p.optionalString(8192),
      DryRun: p.boolean().optional(),
      ...exportFields,
    }),
    async handle(params, { kms, caller }) {
      const r = await exportDataKey(kms.deps, serviceInput(params), caller);
      return { KeyId: r.keyId, KeyVersionId: r.keyVersionId, ExportedDataKey: r.exportedDataKey };
    },
  }),
};
