/**
 * Asymmetric algorithms (alibaba-api.md §5.2, §3.4): which algorithm a spec and usage take,
 * the Digest and plaintext limits, and the encodings PKCS#11 and openssl disagree on.
 * No I/O.
 */
import { invalidParameter } from './errors.js';
import type { KeyShape } from './key-spec.js';

export type SigningAlgorithm = 'RSA_PSS_SHA_256' | 'RSA_PKCS1_SHA_256' | 'ECDSA_SHA_256';
export const SIGNING_ALGORITHMS: readonly SigningAlgorithm[] = ['RSA_PSS_SHA_256', 'RSA_PKCS1_SHA_256', 'ECDSA_SHA_256'];

export type AsymmetricEncryptionAlgorithm = 'RSAES_OAEP_SHA_1' | 'RSAES_OAEP_SHA_256';
export const ASYMMETRIC_ENCRYPTION_ALGORITHMS: readonly AsymmetricEncryptionAlgorithm[] = ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'];

/** Every signing algorithm digests with SHA-256: the Digest is exactly 32 bytes. */
export const DIGEST_BYTES = 32;

/** RSA-PSS salt length: the digest length, as Alibaba and `openssl -sigopt rsa_pss_saltlen:32` use. */
export const PSS_SALT_BYTES = 32;

/** DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1): CKM_RSA_PKCS signs prefix ‖ digest. */
export const SHA256_DIGEST_INFO_PREFIX = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/**
 * The signing algorithms a key shape offers (§5.2): RSA signs with PSS or PKCS#1 v1.5, EC
 * with ECDSA. SM2 keys would sign with SM2DSA, which is not implemented.
 */
export function signingAlgorithmsFor(shape: KeyShape): readonly SigningAlgorithm[] {
  if (shape.kind === 'rsa') return ['RSA_PSS_SHA_256', 'RSA_PKCS1_SHA_256'];
  if (shape.kind === 'ec' && shape.curve !== 'SM2') return ['ECDSA_SHA_256'];
  return [];
}

/** Only RSA keys encrypt here (SM2PKE is not implemented). */
export function encryptionAlgorithmsFor(shape: KeyShape): readonly AsymmetricEncryptionAlgorithm[] {
  return shape.kind === 'rsa' ? ASYMMETRIC_ENCRYPTION_ALGORITHMS : [];
}

/** @throws InvalidParameter(Algorithm) when the key's spec does not sign with `algorithm`. */
export function assertSigningAlgorithm(shape: KeyShape, algorithm: string): SigningAlgorithm {
  const allowed = signingAlgorithmsFor(shape);
  if (!(allowed as readonly string[]).includes(algorithm)) {
    throw invalidParameter('Algorithm', `This key signs with: ${allowed.join(', ') || 'nothing'}.`);
  }
  return algorithm as SigningAlgorithm;
}

/** @throws InvalidParameter(Algorithm) when the key's spec does not encrypt with `algorithm`. */
export function assertEncryptionAlgorithm(shape: KeyShape, algorithm: string): AsymmetricEncryptionAlgorithm {
  const allowed = encryptionAlgorithmsFor(shape);
  if (!(allowed as readonly string[]).includes(algorithm)) {
    throw invalidParameter('Algorithm', `This key encrypts with: ${allowed.join(', ') || 'nothing'}.`);
  }
  return algorithm as AsymmetricEncryptionAlgorithm;
}

/** OAEP's hash for each algorithm. */
export const oaepHash = (algorithm: AsymmetricEncryptionAlgorithm): 'sha1' | 'sha256' =>
  algorithm === 'RSAES_OAEP_SHA_1' ? 'sha1' : 'sha256';

/**
 * §5.2's maximum plaintext: k − 2·hLen − 2 (RFC 8017 §7.1.1), i.e. 190/214 bytes for RSA_2048
 * and 318/342 for RSA_3072 with OAEP-SHA256/SHA1.
 */
export function maxOaepPlaintextBytes(modulusBits: number, algorithm: AsymmetricEncryptionAlgorithm): number {
  const hashBytes = algorithm === 'RSAES_OAEP_SHA_1' ? 20 : 32;
  return modulusBits / 8 - 2 * hashBytes - 2;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Whether `text` is canonical padded base64 (the empty string is). */
export const isCanonicalBase64 = (text: string): boolean => BASE64.test(text);

/**
 * Strict base64 (Node's decoder silently skips invalid characters, so "not base64" would
 * otherwise become a shorter buffer).
 * @throws InvalidParameter(name)
 */
export function decodeBase64Param(name: string, value: string): Buffer {
  if (!BASE64.test(value)) throw invalidParameter(name, 'It must be base64.');
  return Buffer.from(value, 'base64');
}

/** @throws InvalidParameter(Digest) unless it is the base64 of a 32-byte SHA-256 digest. */
export function decodeDigest(value: string): Buffer {
  const digest = decodeBase64Param('Digest', value);
  if (digest.length !== DIGEST_BYTES) {
    throw invalidParameter('Digest', `It must be the base64 of a ${DIGEST_BYTES}-byte SHA-256 digest.`);
  }
  return digest;
}

/**
 * PKCS#11 CKM_ECDSA returns r ‖ s, each as long as the curve order; openssl (and every X.509
 * tool) expects the DER SEQUENCE { INTEGER r, INTEGER s } (RFC 3279 §2.2.3).
 */
export function ecdsaRawToDer(raw: Buffer): Buffer {
  if (raw.length === 0 || raw.length % 2 !== 0) throw new Error('ECDSA signature must be r ‖ s of equal lengths.');
  const half = raw.length / 2;
  const integer = (bytes: Buffer): Buffer => {
    let start = 0;
    while (start < bytes.length - 1 && bytes[start] === 0) start++;
    let body = bytes.subarray(start);
    // A leading 1 bit would make the INTEGER negative: prefix a zero byte.
    if ((body[0] ?? 0) & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
    return Buffer.concat([Buffer.from([0x02]), derLength(body.length), body]);
  };
  const content = Buffer.concat([integer(raw.subarray(0, half)), integer(raw.subarray(half))]);
  return Buffer.concat([Buffer.from([0x30]), derLength(content.length), content]);
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  return Buffer.from([0x82, n >> 8, n & 0xff]);
}

/**
 * The inverse of `ecdsaRawToDer`, for verification in the token (CKM_ECDSA takes r ‖ s).
 * Returns undefined for anything that is not the DER signature of this size (BER forms too:
 * a padded integer, a long-form length), which verification answers as `false`.
 */
export function ecdsaDerToRaw(der: Buffer, componentBytes: number): Buffer | undefined {
  let offset = 0;
  const readLength = (): number | undefined => {
    const first = der[offset++];
    if (first === undefined) return undefined;
    if (first < 0x80) return first;
    if (first === 0x81) return der[offset++];
    return undefined;
  };
  if (der[offset++] !== 0x30) return undefined;
  const seqLength = readLength();
  if (seqLength === undefined || offset + seqLength !== der.length) return undefined;
  const parts: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    if (der[offset++] !== 0x02) return undefined;
    const length = readLength();
    if (length === undefined || length === 0 || offset + length > der.length) return undefined;
    let value = der.subarray(offset, offset + length);
    offset += length;
    while (value.length > 1 && value[0] === 0) value = value.subarray(1);
    if (value.length > componentBytes) return undefined;
    parts.push(Buffer.concat([Buffer.alloc(componentBytes - value.length), value]));
  }
  if (offset !== der.length) return undefined;
  const raw = Buffer.concat(parts);
  // DER, not BER: one encoding per signature (minimal lengths and integers, no negative
  // integer). Anything else re-encodes differently and is refused, as OpenSSL refuses it.
  return ecdsaRawToDer(raw).equals(der) ? raw : undefined;
}
