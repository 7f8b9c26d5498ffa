/**
 * The BYOK import token codec (seed 000, step 2). A token binds one key, one wrapping key
 * (one download's public key), one algorithm and an expiry; the HSM MACs `signedBytes` with
 * a secret that never leaves it. This module only lays out and parses bytes.
 *
 * Layout, then base64url (no padding):
 *   0x01 ‖ len ‖ keyId ‖ len ‖ wrappingKeyId ‖ len ‖ algorithm ‖ expiresAt (u64 BE) ‖ MAC (32)
 * where each len is one byte and the strings are printable ASCII.
 */
import { expiredImportToken, internalFailure, invalidImportToken } from './errors.js';

/** BYOK wrapping algorithms (seed 000, step 2); same union as `hsm/hsm.ts`. */
export type WrappingAlgorithm = 'RSAES_OAEP_SHA_1' | 'RSAES_OAEP_SHA_256' | 'RSAES_PKCS1_V1_5';
const ALGORITHMS: readonly string[] = ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256', 'RSAES_PKCS1_V1_5'];

export const IMPORT_TOKEN_VERSION = 1;
export const IMPORT_TOKEN_MAC_LENGTH = 32;
/** Seed 000: a token is valid for 24 hours and usable many times within them. */
export const IMPORT_TOKEN_LIFETIME_SECONDS = 24 * 3600;

export interface ImportTokenPayload {
  v: 1;
  keyId: string;
  wrappingKeyId: string;
  algorithm: WrappingAlgorithm;
  /** Unix seconds. */
  expiresAt: number;
}

const PRINTABLE = /^[\x21-\x7e]{1,255}$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * The bytes the MAC covers. Exposed so the issuer can MAC them before calling
 * `encodeImportToken`.
 * @throws InternalFailure when a field cannot be encoded (a bug: the issuer controls every field).
 */
export function importTokenSignedBytes(p: ImportTokenPayload): Buffer {
  const fields = [p.keyId, p.wrappingKeyId, p.algorithm];
  if (!fields.every((f) => PRINTABLE.test(f)) || !Number.isSafeInteger(p.expiresAt) || p.expiresAt < 0) {
    throw internalFailure('import token payload cannot be encoded');
  }
  const expiry = Buffer.alloc(8);
  expiry.writeBigUInt64BE(BigInt(p.expiresAt));
  const parts = fields.flatMap((f) => [Buffer.from([f.length]), Buffer.from(f, 'ascii')]);
  return Buffer.concat([Buffer.from([IMPORT_TOKEN_VERSION]), ...parts, expiry]);
}

/**
 * `base64url(signedBytes ‖ mac)`, where `mac` is the HSM's MAC over
 * `importTokenSignedBytes(payload)`.
 */
export function encodeImportToken(payload: ImportTokenPayload, mac: Buffer): string {
  if (mac.length !== IMPORT_TOKEN_MAC_LENGTH) throw internalFailure('import token MAC must be 32 bytes');
  return Buffer.concat([importTokenSignedBytes(payload), mac]).toString('base64url');
}

/** The parts of a token; the caller must verify `mac` over `signedBytes` before trusting `payload`. */
export interface DecodedImportToken {
  payload: ImportTokenPayload;
  signedBytes: Buffer;
  mac: Buffer;
}

/**
 * Parses a token without verifying it.
 * @throws InvalidImportToken for non-canonical base64url, a wrong version, a truncated or
 *   overlong body, a non-printable field or an unknown algorithm.
 */
export function decodeImportToken(token: string): DecodedImportToken {
  if (!BASE64URL.test(token)) throw invalidImportToken();
  const raw = Buffer.from(token, 'base64url');
  if (raw.toString('base64url') !== token) throw invalidImportToken();
  if (raw.length <= IMPORT_TOKEN_MAC_LENGTH) throw invalidImportToken();
  const signedBytes = raw.subarray(0, raw.length - IMPORT_TOKEN_MAC_LENGTH);
  const mac = raw.subarray(raw.length - IMPORT_TOKEN_MAC_LENGTH);
  if (signedBytes[0] !== IMPORT_TOKEN_VERSION) throw invalidImportToken();

  let offset = 1;
  const readField = (): string => {
    const len = signedBytes[offset];
    if (len === undefined || offset + 1 + len > signedBytes.length) throw invalidImportToken();
    const field = signedBytes.subarray(offset + 1, offset + 1 + len).toString('latin1');
    offset += 1 + len;
    if (!PRINTABLE.test(field)) throw invalidImportToken();
    return field;
  };
  const keyId = readField();
  const wrappingKeyId = readField();
  const algorithm = readField();
  if (!ALGORITHMS.includes(algorithm)) throw invalidImportToken();
  if (signedBytes.length !== offset + 8) throw invalidImportToken();
  const expiresAt = signedBytes.readBigUInt64BE(offset);
  if (expiresAt > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidImportToken();

  return {
    payload: { v: 1, keyId, wrappingKeyId, algorithm: algorithm as WrappingAlgorithm, expiresAt: Number(expiresAt) },
    signedBytes,
    mac,
  };
}

/**
 * Checks a verified token against the request: issued for `keyId`, not expired at `now`
 * (expired from `expiresAt` on).
 * @throws InvalidImportToken for another key; ExpiredImportToken when expired.
 */
export function assertTokenUsable(payload: ImportTokenPayload, { keyId, now }: { keyId: string; now: Date }): void {
  if (payload.keyId !== keyId) throw invalidImportToken();
  if (now.getTime() >= payload.expiresAt * 1000) throw expiredImportToken();
}
