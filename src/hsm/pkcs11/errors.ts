import pkcs11js from 'pkcs11js';
import { KmsError, internalFailure, unavailable } from '../../domain/errors.js';

/**
 * Result codes that mean the token or session went away, or a transient token failure
 * (issue 19: CKR_GENERAL_ERROR from C_GenerateKey under load): retryable 503s; the pool
 * reopens lost sessions. Operations where CKR_GENERAL_ERROR means "this input did not
 * verify" (AES-GCM tags, RSA padding, KWP integrity) test for it before translating.
 */
const UNAVAILABLE_CODES = new Set<number>([
  pkcs11js.CKR_GENERAL_ERROR,
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

/** CKR_GENERAL_ERROR: SoftHSM2's answer to some bad inputs (a failed unwrap, bad padding), not only to faults. */
export const isGeneralError = (error: unknown): boolean => pkcs11Code(error) === pkcs11js.CKR_GENERAL_ERROR;

/**
 * What SoftHSM2 2.6.1 answers now and then to the creation of a token object that a second try
 * makes (seen with several busy processes on the machine): CKR_GENERAL_ERROR, and
 * CKR_TEMPLATE_INCONSISTENT (0xd1) — the file-backed object store read the half-made object's
 * CKA_CLASS or CKA_KEY_TYPE back as its default while checking the template
 * (P11AttrClass::updateAttr), seen once in CI generating a seeded AES key on a fresh token. Our
 * templates are fixed, so a retry of a real inconsistency only repeats the same answer.
 */
export const isTransientCreationFailure = (error: unknown): boolean => {
  const code = pkcs11Code(error);
  return code === pkcs11js.CKR_GENERAL_ERROR || code === pkcs11js.CKR_TEMPLATE_INCONSISTENT;
};

/**
 * Result codes after which the adapter checks its login and service-key handles and, if they
 * are gone, logs in again (Pkcs11Hsm.recover): sessions closed under the service
 * (C_CloseAllSessions), a logged-out token, a device error, a stale object handle.
 */
const RECOVERY_CODES = new Set<number>([
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_OBJECT_HANDLE_INVALID,
  pkcs11js.CKR_KEY_HANDLE_INVALID,
]);

export function mayNeedRecovery(error: unknown): boolean {
  const code = pkcs11Code(error);
  return code !== undefined && RECOVERY_CODES.has(code);
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
    return unavailable(`The HSM is not reachable (${operation}, CKR 0x${code.toString(16)}).`);
  }
  const codeName = code === undefined ? 'native error' : `CKR 0x${code.toString(16)}`;
  return internalFailure(`HSM operation ${operation} failed (${codeName}).`);
}
