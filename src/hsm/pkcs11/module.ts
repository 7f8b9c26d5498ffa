import pkcs11js from 'pkcs11js';
import { unavailable } from '../../domain/errors.js';
import { pkcs11Code } from './errors.js';

/**
 * One loaded PKCS#11 library per process: C_Initialize may be called once per process, so
 * several adapters (a server and its tests, or a restart inside one process) share it and the
 * last close finalizes it.
 */
interface LoadedModule {
  p11: pkcs11js.PKCS11;
  refs: number;
}
const loaded = new Map<string, LoadedModule>();

export function acquireModule(modulePath: string): pkcs11js.PKCS11 {
  const existing = loaded.get(modulePath);
  if (existing) {
    existing.refs += 1;
    return existing.p11;
  }
  const p11 = new pkcs11js.PKCS11();
  try {
    p11.load(modulePath);
  } catch {
    throw unavailable(`Cannot load the PKCS#11 module at ${modulePath}.`);
  }
  try {
    // Async calls run on libuv's thread pool, so the library must lock: with NULL init args
    // SoftHSM2 assumes a single thread and corrupts its heap under concurrent calls
    // (measured: malloc_consolidate aborts at 4 concurrent C_EncryptAsync).
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (error) {
    if (pkcs11Code(error) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw error;
  }
  loaded.set(modulePath, { p11, refs: 1 });
  return p11;
}

export function releaseModule(modulePath: string): void {
  const entry = loaded.get(modulePath);
  if (!entry) return;
  entry.refs -= 1;
  if (entry.refs > 0) return;
  loaded.delete(modulePath);
  try {
    entry.p11.C_Finalize();
  } catch {
    // Finalizing is best effort at shutdown.
  }
}

/** The slot whose initialized token carries `label` (labels are space-padded to 32 bytes). */
export function findTokenSlot(p11: pkcs11js.PKCS11, label: string): pkcs11js.Handle {
  for (const slot of p11.C_GetSlotList(true)) {
    const info = p11.C_GetTokenInfo(slot);
    if (info.label.trim() === label && (info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) !== 0) return slot;
  }
  throw unavailable(`No initialized token labelled "${label}" was found; run \`kms hsm init\`.`);
}

export function login(p11: pkcs11js.PKCS11, session: pkcs11js.Handle, pin: string): void {
  try {
    p11.C_Login(session, pkcs11js.CKU_USER, pin);
  } catch (error) {
    const code = pkcs11Code(error);
    if (code === pkcs11js.CKR_USER_ALREADY_LOGGED_IN) return;
    if (code === pkcs11js.CKR_PIN_INCORRECT || code === pkcs11js.CKR_PIN_INVALID || code === pkcs11js.CKR_PIN_LEN_RANGE) {
      // The PIN itself never appears in an error.
      throw unavailable('The HSM refused the user PIN.');
    }
    throw error;
  }
}
