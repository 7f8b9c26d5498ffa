import { z } from 'zod';
import { ASYMMETRIC_ENCRYPTION_ALGORITHMS, SIGNING_ALGORITHMS } from '../../domain/asymmetric.js';
import { asymmetricDecrypt, asymmetricEncrypt, asymmetricSign, asymmetricVerify, getPublicKey } from '../../services/asymmetric.js';
import { p, serviceInput } from '../params.js';
import { defineAction } from './action.js';

/**
 * The asymmetric actions (alibaba-api.md §3.4). `KeyVersionId` is required by every one of
 * them, as in Alibaba's API; answers carry exactly §3.4's fields (plus RequestId).
 */
const target = {
  KeyId: p.string(2048),
  KeyVersionId: p.string(64),
  DryRun: p.boolean().optional(),
};
const signingAlgorithm = () => p.enum(SIGNING_ALGORITHMS as [string, ...string[]]);
const encryptionAlgorithm = () => p.enum(ASYMMETRIC_ENCRYPTION_ALGORITHMS as [string, ...string[]]);

export const asymmetricActions = {
  GetPublicKey: defineAction({
    access: 'use',
    params: z.object(target),
    async handle(params, { kms, caller }) {
      const result = await getPublicKey(kms.deps, serviceInput(params), caller);
      return { KeyId: result.keyId, KeyVersionId: result.keyVersionId, PublicKey: result.publicKeyPem };
    },
  }),

  AsymmetricSign: defineAction({
    access: 'use',
    params: z.object({ ...target, Algorithm: signingAlgorithm(), Digest: p.string(1024) }),
    async handle(params, { kms, caller }) {
      const result = await asymmetricSign(kms.deps, serviceInput(params), caller);
      return { KeyId: result.keyId, KeyVersionId: result.keyVersionId, Value: result.value };
    },
  }),

  AsymmetricVerify: defineAction({
    access: 'use',
    params: z.object({ ...target, Algorithm: signingAlgorithm(), Digest: p.string(1024), Value: p.string(4096) }),
    async handle(params, { kms, caller }) {
      const result = await asymmetricVerify(kms.deps, serviceInput(params), caller);
      return { KeyId: result.keyId, KeyVersionId: result.keyVersionId, Value: result.value };
    },
  }),

  AsymmetricEncrypt: defineAction({
    access: 'use',
    params: z.object({ ...target, Algorithm: encryptionAlgorithm(), Plaintext: p.string(8192) }),
    async handle(params, { kms, caller }) {
      const result = await asymmetricEncrypt(kms.deps, serviceInput(params), caller);
      return { KeyId: result.keyId, KeyVersionId: result.keyVersionId, CiphertextBlob: result.ciphertextBlob };
    },
  }),

  AsymmetricDecrypt: defineAction({
    access: 'use',
    params: z.object({ ...target, Algorithm: encryptionAlgorithm(), CiphertextBlob: p.string(8192) }),
    async handle(params, { kms, caller }) {
      const result = await asymmetricDecrypt(kms.deps, serviceInput(params), caller);
      try {
        return { KeyId: result.keyId, KeyVersionId: result.keyVersionId, Plaintext: result.plaintext.toString('base64') };
      } finally {
        result.plaintext.fill(0);
      }
    },
  }),
};
