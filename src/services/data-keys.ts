/**
 * Data keys for envelope encryption (alibaba-api.md §3.4): GenerateDataKey,
 * GenerateDataKeyWithoutPlaintext, ExportDataKey and GenerateAndExportDataKey.
 *
 * - The data key's bytes come from the token's RNG (`C_GenerateRandom`) on both tiers.
 * - Its CiphertextBlob holds the key's base64 text (§5.9), sealed under the key's primary
 *   version (seed 002), so Decrypt returns exactly GenerateDataKey's `Plaintext`.
 * - An export wraps the raw key bytes under the caller's RSA public key (domain/data-keys.ts).
 * Buffers holding a data key are zeroed once used; the base64 strings the API must return
 * are the only copies that outlive a call (JS strings cannot be wiped).
 */
import { encryptionContextAad, parseEncryptionContext } from '../domain/ciphertext.js';
import {
  type DataKeySpec,
  type ExportKeySpec,
  assertExportable,
  dataKeyFromPlaintext,
  dataKeyLength,
  dataKeyPlaintext,
  parseExportPublicKey,
  wrapDataKeyForExport,
} from '../domain/data-keys.js';
import { dryRunSucceeded } from '../domain/dry-run.js';
import type { WrappingAlgorithm } from '../domain/import-token.js';
import type { Caller, ServiceDeps } from './context.js';
import { type SymmetricAction, openBlob, sealToBlob, sealingKey } from './symmetric-blobs.js';

export interface DataKeyRequest {
  keyId: string;
  keySpec?: DataKeySpec | undefined;
  numberOfBytes?: number | undefined;
  encryptionContext?: string | undefined;
  dryRun?: boolean | undefined;
}

/** The caller's RSA public key an export wraps the data key under. */
export interface ExportTarget {
  /** base64 DER SubjectPublicKeyInfo. */
  publicKeyBlob: string;
  wrappingAlgorithm: WrappingAlgorithm;
  wrappingKeySpec: ExportKeySpec;
}

export interface GeneratedDataKey {
  keyId: string;
  keyVersionId: string;
  /** base64 of the data key. */
  plaintext: string;
  ciphertextBlob: string;
}

/**
 * Generates a data key and seals it; `withKey` sees the raw key before it is zeroed.
 * DryRun stops after every check, before the RNG or the HSM is used.
 */
async function generate<T>(
  deps: ServiceDeps,
  action: SymmetricAction,
  input: DataKeyRequest,
  caller: Caller,
  withKey: (sealed: { keyId: string; keyVersionId: string; ciphertextBlob: string }, dataKey: Buffer) => T,
): Promise<T> {
  const aad = encryptionContextAad(parseEncryptionContext(input.encryptionContext));
  const length = dataKeyLength(input.numberOfBytes, input.keySpec);
  const target = await sealingKey(deps, input.keyId, action, caller);
  if (input.dryRun) throw dryRunSucceeded();
  const dataKey = await deps.hsm.randomBytes(length);
  const text = dataKeyPlaintext(dataKey);
  try {
    const ciphertextBlob = await sealToBlob(deps, target, text, aad);
    return withKey({ keyId: target.key.id, keyVersionId: target.version.id, ciphertextBlob }, dataKey);
  } finally {
    dataKey.fill(0);
    text.fill(0);
  }
}

/**
 * GenerateDataKey: a fresh data key, in plaintext (base64) and sealed.
 * @throws InvalidParameter, Forbidden.KeyNotFound, Rejected.<State>, Rejected.UnsupportedOperation,
 *   DryRunOperationError
 */
export function generateDataKey(deps: ServiceDeps, input: DataKeyRequest, caller: Caller): Promise<GeneratedDataKey> {
  return generate(deps, 'GenerateDataKey', input, caller, (sealed, dataKey) => ({
    ...sealed,
    plaintext: dataKey.toString('base64'),
  }));
}

/** GenerateDataKeyWithoutPlaintext: the same, answering only the sealed form. */
export function generateDataKeyWithoutPlaintext(
  deps: ServiceDeps,
  input: DataKeyRequest,
  caller: Caller,
): Promise<{ keyId: string; keyVersionId: string; ciphertextBlob: string }> {
  return generate(deps, 'GenerateDataKeyWithoutPlaintext', input, caller, (sealed) => sealed);
}

/**
 * GenerateAndExportDataKey: a fresh data key, sealed, and wrapped under the caller's public key
 * (never in plaintext). The public key and the size rule are checked before any key is made.
 * @throws as generateDataKey; InvalidParameter(PublicKeyBlob | NumberOfBytes)
 */
export function generateAndExportDataKey(
  deps: ServiceDeps,
  input: DataKeyRequest & ExportTarget,
  caller: Caller,
): Promise<{ keyId: string; keyVersionId: string; ciphertextBlob: string; exportedDataKey: string }> {
  const publicKey = parseExportPublicKey(input.publicKeyBlob, input.wrappingKeySpec);
  // Before the key is loaded or the RNG touched: a size the padding cannot carry is a parameter error.
  assertExportable(publicKey, input.wrappingAlgorithm, dataKeyLength(input.numberOfBytes, input.keySpec));
  return generate(deps, 'GenerateAndExportDataKey', input, caller, (sealed, dataKey) => ({
    ...sealed,
    exportedDataKey: wrapDataKeyForExport(publicKey, input.wrappingAlgorithm, dataKey).toString('base64'),
  }));
}

/**
 * ExportDataKey: opens a data key's CiphertextBlob (its key's state and the caller's access
 * apply as for Decrypt) and wraps the raw key under the caller's public key.
 * @throws InvalidCiphertext, InvalidParameter(CiphertextBlob | PublicKeyBlob | NumberOfBytes),
 *   Forbidden.KeyNotFound, Rejected.<State>, DryRunOperationError
 */
export async function exportDataKey(
  deps: ServiceDeps,
  input: ExportTarget & { ciphertextBlob: string; encryptionContext?: string | undefined; dryRun?: boolean | undefined },
  caller: Caller,
): Promise<{ keyId: string; keyVersionId: string; exportedDataKey: string }> {
  const publicKey = parseExportPublicKey(input.publicKeyBlob, input.wrappingKeySpec);
  const aad = encryptionContextAad(parseEncryptionContext(input.encryptionContext));
  const opened = await openBlob(deps, input.ciphertextBlob, aad, 'ExportDataKey', caller);
  let dataKey: Buffer | undefined;
  try {
    dataKey = dataKeyFromPlaintext(opened.plaintext);
    const exported = wrapDataKeyForExport(publicKey, input.wrappingAlgorithm, dataKey);
    // A dry run has done every check, the unwrap and the size rule included.
    if (input.dryRun) throw dryRunSucceeded();
    return { keyId: opened.key.id, keyVersionId: opened.version.id, exportedDataKey: exported.toString('base64') };
  } finally {
    opened.plaintext.fill(0);
    dataKey?.fill(0);
  }
}
