/**
 * ReEncrypt (alibaba-api.md §3.4): a ciphertext under one key becomes a ciphertext under
 * another in one call, the plaintext never leaving the service. The caller needs use of both
 * keys: a key it may not see, on either side, is answered as a missing key (404, issue 13).
 * The source is checked as Decrypt would check it, the destination as Encrypt would
 * (domain/key.ts, ReEncrypt row), and the result is sealed under the destination's primary
 * version (seed 002).
 */
import { encryptionContextAad, parseEncryptionContext } from '../domain/ciphertext.js';
import { dryRunSucceeded } from '../domain/dry-run.js';
import { unsupportedOperation } from '../domain/errors.js';
import type { Caller, ServiceDeps } from './context.js';
import { openBlob, sealToBlob, sealingKey } from './symmetric-blobs.js';

export interface ReEncryptInput {
  ciphertextBlob: string;
  sourceEncryptionContext?: string | undefined;
  destinationKeyId: string;
  destinationEncryptionContext?: string | undefined;
  /** The asymmetric source form (§3.4): the blob is an AsymmetricEncrypt ciphertext of this key version. */
  sourceKeyId?: string | undefined;
  sourceKeyVersionId?: string | undefined;
  sourceEncryptionAlgorithm?: string | undefined;
  dryRun?: boolean | undefined;
}

export interface ReEncryptResult {
  keyId: string;
  keyVersionId: string;
  ciphertextBlob: string;
}

/**
 * @throws InvalidCiphertext (also for a wrong SourceEncryptionContext), InvalidParameter,
 *   Forbidden.KeyNotFound / Forbidden.AliasNotFound (404), Rejected.<State> (409),
 *   Rejected.UnsupportedOperation (the asymmetric source form, not served yet),
 *   DryRunOperationError
 */
export async function reEncrypt(deps: ServiceDeps, input: ReEncryptInput, caller: Caller): Promise<ReEncryptResult> {
  if (input.sourceKeyId !== undefined || input.sourceKeyVersionId !== undefined || input.sourceEncryptionAlgorithm !== undefined) {
    // Needs AsymmetricDecrypt's service path (issue 15, asymmetric keys); refused clearly until then.
    throw unsupportedOperation('ReEncrypt from an asymmetric ciphertext (SourceKeyId, SourceKeyVersionId, SourceEncryptionAlgorithm) is not supported yet; re-encrypt symmetric ciphertexts only.');
  }
  const sourceAad = encryptionContextAad(parseEncryptionContext(input.sourceEncryptionContext));
  const destinationAad = encryptionContextAad(parseEncryptionContext(input.destinationEncryptionContext));
  // The destination first: no plaintext is produced for a call that cannot finish.
  const destination = await sealingKey(deps, input.destinationKeyId, 'ReEncrypt', caller);
  const source = await openBlob(deps, input.ciphertextBlob, sourceAad, 'ReEncrypt', caller);
  try {
    if (input.dryRun) throw dryRunSucceeded();
    const ciphertextBlob = await sealToBlob(deps, destination, source.plaintext, destinationAad);
    return { keyId: destination.key.id, keyVersionId: destination.version.id, ciphertextBlob };
  } finally {
    source.plaintext.fill(0);
  }
}
