import pkcs11js from 'pkcs11js';
import { KmsError, internalFailure, unavailable } from '../../domain/errors.js';

/** Result codes that mean the token or session went away: retryable, the pool reopens sessions. */
const UNAVAILABLE_CODES = new Set<number>([
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_DEVICE_MEMORY,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
]);

/** The PKCS#11 result code of a pkcs11js error, or undefined for anything else. */
export function pkcs11Code(error: unknown): number | undefined {
  if (error instanceof pkcs11js.Pkcs11Error) return error.code;
  return undefined;
}

export function isSessionLost(error: unknown): boolean {
  const code = pkcs11Code(error);
  return code !== undefined && (code === pkcs11js.CKR_SESSION_HANDLE_INVALID || code === pkcs11js.CKR_SESSION_CLOSED);
}

/**
 * Translates a vendor error by its result code (never by message text) into a KmsError.
 * Already-typed KmsErrors pass through unchanged.
 */
export function translatePkcs11Error(error: unknown, operation: string): KmsError {
  if (error instanceof KmsError) return error;
  const code = pkcs11Code(error);
  if (code !== undefined && UNAVAILABLE_CODES.has(code)) {
    return unavailable(`The HSM is not reachable (${operation}).`);
  }
  const codeName = code === undefined ? 'native error' : `CKR 0x${code.toString(16)}`;
  return internalFailure(`HSM operation ${operation} failed (${codeName}).`);
}
