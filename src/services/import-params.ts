import {
  type WrappingAlgorithm,
  type WrappingKeySpec,
  allowedWrappingAlgorithms,
  assertImportAction,
  assertWrappingAlgorithmAllowed,
  keyManagementType,
} from '../domain/byok.js';
import { unsupportedOperation } from '../domain/errors.js';
import { IMPORT_TOKEN_LIFETIME_SECONDS, encodeImportToken, importTokenSignedBytes, type ImportTokenPayload } from '../domain/import-token.js';
import type { Hsm } from '../hsm/hsm.js';
import { recordAudit } from '../store/audit.js';
import { insertImportToken } from '../store/wrapping-keys.js';
import { scheduleBestEffort } from './jobs-port.js';
import type { Caller, ServiceDeps } from './context.js';
import { loadKey } from './key-lookup.js';
import { issueWrappingKey } from './wrapping-keys.js';

export interface GetParametersForImportInput {
  keyId: string;
  wrappingKeySpec: WrappingKeySpec;
  wrappingAlgorithm: WrappingAlgorithm;
}

/** Seed 000, step 2: what the user downloads. */
export interface ImportParameters {
  keyId: string;
  /** base64url token binding (key, wrapping key, algorithm, expiry), MAC'd in the HSM. */
  importToken: string;
  /** DER SubjectPublicKeyInfo of the wrapping key (`openssl pkeyutl -keyform DER -pubin`). */
  publicKeyDer: Buffer;
  tokenExpireTime: Date;
  wrappingKeyId: string;
}

/**
 * GetParametersForImport. Every call issues a different RSA-2048 wrapping pair and token
 * (alibaba-api.md §5.3): "the public key and the token of one download must be used
 * together" (seed 000). The token is valid 24 hours and usable many times within them.
 * @throws Forbidden.KeyNotFound, Unsupported.Origin, Rejected.PendingDeletion,
 *   InvalidParameter(WrappingAlgorithm) for an algorithm the seed's table does not offer
 *   for this key, Rejected.UnsupportedOperation when the HSM cannot unwrap it (strict mode).
 */
export async function getParametersForImport(deps: ServiceDeps, input: GetParametersForImportInput, caller: Caller): Promise<ImportParameters> {
  const key = await loadKey(deps, deps.db, input.keyId, caller);
  assertImportAction('GetParametersForImport', key);
  const type = keyManagementType(key);
  assertWrappingAlgorithmAllowed(type, input.wrappingAlgorithm);
  assertHsmCanUnwrap(deps.hsm, deps.config.hsm.importStrict, input.wrappingAlgorithm, allowedWrappingAlgorithms(type));

  const now = deps.clock.now();
  const expiresAtSeconds = Math.floor(now.getTime() / 1000) + IMPORT_TOKEN_LIFETIME_SECONDS;
  const expiresAt = new Date(expiresAtSeconds * 1000);
  const issue = { keyId: key.id, algorithm: input.wrappingAlgorithm, issuedAt: now, expiresAt };

  const { parameters, pooled } = await issueWrappingKey(deps, issue, async (tx, { wrappingKey, pooled }) => {
    const payload: ImportTokenPayload = {
      v: 1,
      keyId: key.id,
      wrappingKeyId: wrappingKey.id,
      algorithm: input.wrappingAlgorithm,
      expiresAt: expiresAtSeconds,
    };
    const mac = await deps.hsm.macWithTokenKey(importTokenSignedBytes(payload));
    await insertImportToken(tx, { wrappingKeyId: wrappingKey.id, keyId: key.id, algorithm: input.wrappingAlgorithm, expiresAt, createdAt: now });
    await recordAudit(tx, {
      requestId: caller.requestId,
      accessKeyId: caller.accessKeyId,
      sourceIp: caller.sourceIp,
      action: 'GetParametersForImport',
      keyId: key.id,
      detail: { wrappingKeyId: wrappingKey.id, wrappingAlgorithm: input.wrappingAlgorithm, wrappingKeySpec: input.wrappingKeySpec, pooled, tokenExpireTime: expiresAt.toISOString() },
    });
    const parameters: ImportParameters = {
      keyId: key.id,
      importToken: encodeImportToken(payload, mac),
      publicKeyDer: wrappingKey.publicKeyDer,
      tokenExpireTime: expiresAt,
      wrappingKeyId: wrappingKey.id,
    };
    return { parameters, pooled };
  });

  // Not awaited: the answer does not depend on it, and queueing the refill (a BullMQ add, a few
  // Redis round trips: 2-9 ms measured) stays off the request's latency. Never rejects.
  if (pooled) void scheduleBestEffort(deps, 'wrapping-pool-refill', () => deps.jobs.requestWrappingPoolRefill());
  return parameters;
}

/**
 * DESIGN.md, "Known HSM capability gap": a token without native OAEP-SHA256 unwrap uses the
 * host decoding fallback unless strict mode forbids it; then the algorithm is refused here,
 * before the user encrypts anything with a key we could not use.
 * @throws Rejected.UnsupportedOperation naming the algorithm, the reason and the alternatives.
 */
export function assertHsmCanUnwrap(hsm: Hsm, strict: boolean, algorithm: WrappingAlgorithm, offered: readonly WrappingAlgorithm[]): void {
  if (hsm.supportsWrappingAlgorithm(algorithm)) return;
  const alternatives = offered.filter((a) => a !== algorithm && hsm.supportsWrappingAlgorithm(a));
  const reason =
    strict && algorithm === 'RSAES_OAEP_SHA_256'
      ? 'the token cannot unwrap it natively and strict import mode (KMS_IMPORT_STRICT=true) forbids decoding OAEP on the host'
      : 'the token cannot unwrap it';
  throw unsupportedOperation(
    `WrappingAlgorithm ${algorithm} is not available on this HSM: ${reason}.${alternatives.length > 0 ? ` Use ${alternatives.join(' or ')}.` : ''}`,
  );
}
