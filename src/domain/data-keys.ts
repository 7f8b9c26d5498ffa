/**
 * Data keys (envelope encryption, alibaba-api.md §3.4, §5.9): how long a data key is, how
 * its plaintext travels, and how a caller's RSA public key wraps one for ExportDataKey /
 * GenerateAndExportDataKey. Pure apart from node:crypto's public-key operations.
 */
import { type KeyObject, constants, createPublicKey, publicEncrypt } from 'node:crypto';
import { isCanonicalBase64, maxOaepPlaintextBytes } from './asymmetric.js';
import { invalidParameter } from './errors.js';
import type { WrappingAlgorithm } from './import-token.js';

/** GenerateDataKey's `KeySpec` (§3.4). */
export type DataKeySpec = 'AES_256' | 'AES_128';
export const DATA_KEY_SPECS = ['AES_256', 'AES_128'] as const satisfies readonly [DataKeySpec, ...DataKeySpec[]];

/** §3.4: `NumberOfBytes` is 1–1024, default 32. */
export const MIN_DATA_KEY_BYTES = 1;
export const MAX_DATA_KEY_BYTES = 1024;
export const DEFAULT_DATA_KEY_BYTES = 32;

/**
 * The data key's length in bytes. §3.4: `NumberOfBytes` wins over `KeySpec`; without either,
 * 32 bytes (AES_256). The edge schema has already bounded `numberOfBytes` to 1–1024.
 */
export function dataKeyLength(numberOfBytes: number | undefined, keySpec: DataKeySpec | undefined): number {
  if (numberOfBytes !== undefined) return numberOfBytes;
  if (keySpec === 'AES_128') return 16;
  return DEFAULT_DATA_KEY_BYTES;
}

/**
 * What a data key's CiphertextBlob holds: the **base64 text** of the key, as Alibaba's
 * dkms-transfer SDK builds it (§5.9), so Decrypt of the blob returns exactly GenerateDataKey's
 * `Plaintext` (Plaintext stays an opaque string, returned verbatim).
 */
export const dataKeyPlaintext = (dataKey: Buffer): Buffer => Buffer.from(dataKey.toString('base64'), 'ascii');

/**
 * The raw data key inside a decrypted blob (the inverse of {@link dataKeyPlaintext}), for
 * ExportDataKey. A blob made by Encrypt of anything but the canonical base64 of 1–1024 bytes
 * holds no data key and is refused: wrapping its bytes would hand back something the caller
 * did not ask for.
 * @throws InvalidParameter(CiphertextBlob)
 */
export function dataKeyFromPlaintext(text: Buffer): Buffer {
  const s = text.toString('latin1');
  const ok = s.length > 0 && isCanonicalBase64(s);
  const key = ok ? Buffer.from(s, 'base64') : Buffer.alloc(0);
  if (key.length < MIN_DATA_KEY_BYTES || key.length > MAX_DATA_KEY_BYTES) {
    key.fill(0);
    throw invalidParameter('CiphertextBlob', `It does not hold a data key (the base64 text of ${MIN_DATA_KEY_BYTES} to ${MAX_DATA_KEY_BYTES} bytes, as GenerateDataKey makes).`);
  }
  return key;
}

/** `WrappingKeySpec` of an export: the caller's RSA public key size. */
export type ExportKeySpec = 'RSA_2048' | 'RSA_3072';
export const EXPORT_KEY_SPECS = ['RSA_2048', 'RSA_3072'] as const satisfies readonly [ExportKeySpec, ...ExportKeySpec[]];
const MODULUS_BITS: Readonly<Record<ExportKeySpec, number>> = { RSA_2048: 2048, RSA_3072: 3072 };

/**
 * `PublicKeyBlob`: base64 DER SubjectPublicKeyInfo of an RSA key (the form GetParametersForImport
 * hands out, §3.2), whose modulus matches `WrappingKeySpec`.
 * @throws InvalidParameter(PublicKeyBlob)
 */
export function parseExportPublicKey(blob: string, spec: ExportKeySpec): KeyObject {
  const compact = blob.replace(/\s+/g, '');
  if (!isCanonicalBase64(compact) || compact.length === 0) {
    throw invalidParameter('PublicKeyBlob', 'It must be the base64 of a DER SubjectPublicKeyInfo.');
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(compact, 'base64'), format: 'der', type: 'spki' });
  } catch {
    throw invalidParameter('PublicKeyBlob', 'It must be the base64 of a DER SubjectPublicKeyInfo.');
  }
  if (key.asymmetricKeyType !== 'rsa') throw invalidParameter('PublicKeyBlob', 'It must be an RSA public key.');
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (bits !== MODULUS_BITS[spec]) {
    throw invalidParameter('PublicKeyBlob', `Its modulus is ${bits ?? 'unknown'} bits; WrappingKeySpec ${spec} needs ${MODULUS_BITS[spec]}.`);
  }
  return key;
}

/** RFC 8017: OAEP carries k − 2·hLen − 2 bytes, PKCS#1 v1.5 k − 11. */
export function maxWrappableBytes(modulusBits: number, algorithm: WrappingAlgorithm): number {
  return algorithm === 'RSAES_PKCS1_V1_5' ? modulusBits / 8 - 11 : maxOaepPlaintextBytes(modulusBits, algorithm);
}

/**
 * Whether a data key of `length` bytes fits `algorithm` under `publicKey`.
 * @throws InvalidParameter(NumberOfBytes)
 */
export function assertExportable(publicKey: KeyObject, algorithm: WrappingAlgorithm, length: number): void {
  const bits = publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
  const max = maxWrappableBytes(bits, algorithm);
  if (length > max) {
    throw invalidParameter('NumberOfBytes', `A ${length}-byte data key does not fit ${algorithm} under an RSA-${bits} key (at most ${max} bytes).`);
  }
}

/**
 * `ExportedDataKey`: the **raw data key bytes** (not their base64 text) encrypted under the
 * caller's public key, so the matching private key (`openssl pkeyutl -decrypt`, node's
 * privateDecrypt with the same padding and OAEP hash) yields the key itself.
 * @throws InvalidParameter(NumberOfBytes) when the key is longer than the padding can carry.
 */
export function wrapDataKeyForExport(publicKey: KeyObject, algorithm: WrappingAlgorithm, dataKey: Buffer): Buffer {
  assertExportable(publicKey, algorithm, dataKey.length);
  switch (algorithm) {
    case 'RSAES_OAEP_SHA_256':
      return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, dataKey);
    case 'RSAES_OAEP_SHA_1':
      return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, dataKey);
    case 'RSAES_PKCS1_V1_5':
      return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, dataKey);
  }
}
