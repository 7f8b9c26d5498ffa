/**
 * ReEncrypt (alibaba-api.md §3.4): a ciphertext under one key becomes a ciphertext under
 * another in one call, the plaintext never leaving the service. The caller needs use of both
 * keys: a key it may not see, on either side, is answered as a missing key (404, issue 13).
 * The source is checked as Decrypt would check it, the destination as Encrypt would
 * (domain/key.ts, ReEncrypt row), and the result is sealed under the destination's primary
 * version (seed 002).
 *
 * The asymmetric source form (SourceKeyId, SourceKeyVersionId, SourceEncryptionAlgorithm) opens
 * an AsymmetricEncrypt ciphertext exactly as AsymmetricDecrypt would (services/asymmetric.ts,
 * usage row ReEncryptFromAsymmetric) and seals the **base64 text** of the bytes, as data keys do
 * (§5.9): Decrypt of the result returns the `Plaintext` AsymmetricEncrypt was given.
 */
import { encryptionContextAad, parseEncryptionContext } from '../domain/ciphertext.js';
import { dryRunSucceeded } from '../domain/dry-run.js';
import { invalidParameter, missingParameter } from '../domain/errors.js';
import { asymmetricDecrypt } from './asymmetric.js';
import type { Caller, ServiceDeps } from './context.js';
import { type OpenedBlob, type SealingKey, openBlob, sealToBlob, sealingKey } from './symmetric-blobs.js';

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
 *   MissingParameter (an incomplete asymmetric source), Forbidden.KeyNotFound /
 *   Forbidden.AliasNotFound (404), Rejected.<State> (409), Rejected.UnsupportedOperation
 *   (a key whose usage does not fit its side), DryRunOperationError
 */
export async function reEncrypt(deps: ServiceDeps, input: ReEncryptInput, caller: Caller): Promise<ReEncryptResult> {
  const asymmetric = input.sourceKeyId !== undefined || input.sourceKeyVersionId !== undefined || input.sourceEncryptionAlgorithm !== undefined;
  if (asymmetric && input.sourceEncryptionContext !== undefined) {
    throw invalidParameter('SourceEncryptionContext', 'It applies to symmetric ciphertexts only; an asymmetric one has no context.');
  }
  const sourceAad = encryptionContextAad(parseEncryptionContext(input.sourceEncryptionContext, 'SourceEncryptionContext'));
  const destinationAad = encryptionContextAad(parseEncryptionContext(input.destinationEncryptionContext, 'DestinationEncryptionContext'));
  // The destination first: no plaintext is produced for a call that cannot finish.
  const destination = await sealingKey(deps, input.destinationKeyId, 'ReEncrypt', caller);
  const source = asymmetric
    ? await openAsymmetricSource(deps, input, caller)
    : await openBlob(deps, input.ciphertextBlob, sourceAad, 'ReEncrypt', caller);
  return finish(deps, destination, source.plaintext, destinationAad, input.dryRun === true);
}

/** Seals the source plaintext under the destination, zeroing it whatever happens. */
async function finish(deps: ServiceDeps, destination: SealingKey, plaintext: Buffer, aad: Buffer | undefined, dryRun: boolean): Promise<ReEncryptResult> {
  try {
    if (dryRun) throw dryRunSucceeded();
    const ciphertextBlob = await sealToBlob(deps, destination, plaintext, aad);
    return { keyId: destination.key.id, keyVersionId: destination.version.id, ciphertextBlob };
  } finally {
    plaintext.fill(0);
  }
}

/**
 * The asymmetric source: all three Source* parameters are needed (§3.4). The decrypted bytes
 * become their base64 text, the form Decrypt returns verbatim; the raw bytes are zeroed.
 */
async function openAsymmetricSource(deps: ServiceDeps, input: ReEncryptInput, caller: Caller): Promise<Pick<OpenedBlob, 'plaintext'>> {
  const { sourceKeyId, sourceKeyVersionId, sourceEncryptionAlgorithm } = input;
  if (sourceKeyId === undefined) throw missingParameter('SourceKeyId');
  if (sourceKeyVersionId === undefined) throw missingParameter('SourceKeyVersionId');
  if (sourceEncryptionAlgorithm === undefined) throw missingParameter('SourceEncryptionAlgorithm');
  const opened = await asymmetricDecrypt(
    deps,
    { keyId: sourceKeyId, keyVersionId: sourceKeyVersionId, algorithm: sourceEncryptionAlgorithm, ciphertextBlob: input.ciphertextBlob, action: 'ReEncryptFromAsymmetric' },
    caller,
  );
  try {
    return { plaintext: Buffer.from(opened.plaintext.toString('base64'), 'ascii') };
  } finally {
    opened.plaintext.fill(0);
  }
}
