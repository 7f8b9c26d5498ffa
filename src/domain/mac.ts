/**
 * MAC keys (issue 15; alibaba-api.md §3.4 GenerateMac/VerifyMac, §5.2): which algorithm a
 * MAC key computes, and the Message and Mac limits. No I/O.
 *
 * A key's spec fixes its algorithm: an `HMAC_SHA256` key computes `HMAC_SHA_256` and nothing
 * else. One key, one algorithm (NIST SP 800-57 §5.2; AWS KMS's HMAC keys behave the same):
 * a key shared between hashes would let one MAC be replayed as another's input, and the key
 * length is chosen for the hash (RFC 2104 §3).
 */
import { decodeBase64Param } from './asymmetric.js';
import { invalidParameter } from './errors.js';
import { type KeyShape, MAC_HASH_BYTES, type MacHash } from './key-spec.js';

/** §3.4's GenerateMac algorithms. HMAC_SM3 is named by Alibaba and refused here (`assertMacAlgorithm`). */
export type MacAlgorithm = 'HMAC_SHA_224' | 'HMAC_SHA_256' | 'HMAC_SHA_384' | 'HMAC_SHA_512';
export const MAC_ALGORITHMS: readonly MacAlgorithm[] = ['HMAC_SHA_224', 'HMAC_SHA_256', 'HMAC_SHA_384', 'HMAC_SHA_512'];
/** Every algorithm name the API accepts as a value (the schema), refused ones included so they get a clear answer. */
export const MAC_ALGORITHM_NAMES = ['HMAC_SM3', ...MAC_ALGORITHMS] as const;

const ALGORITHM_OF_HASH: Readonly<Record<MacHash, MacAlgorithm>> = {
  sha224: 'HMAC_SHA_224',
  sha256: 'HMAC_SHA_256',
  sha384: 'HMAC_SHA_384',
  sha512: 'HMAC_SHA_512',
};

const HASH_OF_ALGORITHM: Readonly<Record<MacAlgorithm, MacHash>> = {
  HMAC_SHA_224: 'sha224',
  HMAC_SHA_256: 'sha256',
  HMAC_SHA_384: 'sha384',
  HMAC_SHA_512: 'sha512',
};

export const macHash = (algorithm: MacAlgorithm): MacHash => HASH_OF_ALGORITHM[algorithm];
export const macAlgorithmOf = (hash: MacHash): MacAlgorithm => ALGORITHM_OF_HASH[hash];
/** MAC length in bytes: the hash's output (no truncation). */
export const macBytes = (algorithm: MacAlgorithm): number => MAC_HASH_BYTES[macHash(algorithm)];

/**
 * Our limit on GenerateMac/VerifyMac's decoded `Message`: 4096 bytes, as AWS KMS's GenerateMac
 * (Alibaba documents none for these actions; §3.4). A MAC over more is computed by the caller
 * over a digest, or with a data key.
 */
export const MAX_MAC_MESSAGE_BYTES = 4096;
/** The base64 text of MAX_MAC_MESSAGE_BYTES, for the schema's length bound. */
export const MAX_MAC_MESSAGE_CHARS = Math.ceil(MAX_MAC_MESSAGE_BYTES / 3) * 4;

/**
 * @throws InvalidParameter(Algorithm) for HMAC_SM3 (no SM3 in the token or node:crypto
 *   here), and for an algorithm other than the one the key's spec fixes.
 */
export function assertMacAlgorithm(shape: KeyShape, keySpec: string, algorithm: string): MacAlgorithm {
  if (algorithm === 'HMAC_SM3') {
    throw invalidParameter('Algorithm', 'HMAC_SM3 is not supported: neither the HSM nor the SOFTWARE tier has SM3. Use an HMAC_SHA* key.');
  }
  if (shape.kind !== 'hmac') throw invalidParameter('Algorithm', 'This key computes no MAC.');
  const expected = macAlgorithmOf(shape.hash);
  if (algorithm !== expected) throw invalidParameter('Algorithm', `A ${keySpec} key computes ${expected} only.`);
  return expected;
}

/** @throws InvalidParameter(Message) unless it is the base64 of 1 to MAX_MAC_MESSAGE_BYTES bytes. */
export function decodeMacMessage(value: string): Buffer {
  const message = decodeBase64Param('Message', value);
  if (message.length === 0 || message.length > MAX_MAC_MESSAGE_BYTES) {
    throw invalidParameter('Message', `It must be the base64 of 1 to ${MAX_MAC_MESSAGE_BYTES} bytes.`);
  }
  return message;
}

/**
 * VerifyMac's `Mac`: strict base64; any length decodes (a MAC of the wrong length simply does
 * not verify, which is what the caller asked), but not more than the longest MAC.
 * @throws InvalidParameter(Mac)
 */
export function decodeMac(value: string): Buffer {
  const mac = decodeBase64Param('Mac', value);
  if (mac.length > MAC_HASH_BYTES.sha512) throw invalidParameter('Mac', `It must be the base64 of at most ${MAC_HASH_BYTES.sha512} bytes.`);
  return mac;
}
