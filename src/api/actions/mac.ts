import { z } from 'zod';
import { MAC_ALGORITHM_NAMES, MAX_MAC_MESSAGE_CHARS } from '../../domain/mac.js';
import { generateMac, verifyMac } from '../../services/mac.js';
import { p, serviceInput } from '../params.js';
import { defineAction } from './action.js';

/**
 * GenerateMac / VerifyMac (alibaba-api.md §3.4; fields as the 3.x SDK's models). `Algorithm`
 * is required, as in the SDK; HMAC_SM3 passes the schema so the service can refuse it with
 * its reason. GenerateMac also answers KeyVersionId (not in §3.4; clients ignore extra fields).
 */
const common = {
  KeyId: p.string(2048),
  Algorithm: p.enum(MAC_ALGORITHM_NAMES as unknown as [string, ...string[]]),
  Message: p.string(MAX_MAC_MESSAGE_CHARS),
  DryRun: p.boolean().optional(),
};

export const macActions = {
  GenerateMac: defineAction({
    access: 'use',
    params: z.object(common),
    async handle(params, { kms, caller }) {
      const result = await generateMac(kms.deps, serviceInput(params), caller);
      return { KeyId: result.keyId, KeyVersionId: result.keyVersionId, Algorithm: result.algorithm, Mac: result.mac };
    },
  }),

  VerifyMac: defineAction({
    access: 'use',
    // 88 characters hold the longest MAC (64 bytes); longer is refused by the schema.
    params: z.object({ ...common, Mac: p.string(88) }),
    async handle(params, { kms, caller }) {
      const result = await verifyMac(kms.deps, serviceInput(params), caller);
      return { KeyId: result.keyId, Algorithm: result.algorithm, Value: result.value };
    },
  }),
};
