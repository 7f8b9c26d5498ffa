/**
 * The master wrapping key of HsmEncryptedDatabase storage: an AES-256 token key that only
 * wraps and unwraps (no encrypt/decrypt), sensitive, non-extractable, private, and
 * `CKA_TRUSTED`, so version keys marked `CKA_WRAP_WITH_TRUSTED` can be wrapped by it and by
 * no other key (SoftHSM2 answers CKR_KEY_NOT_WRAPPABLE to any other wrapping key).
 *
 * Only the Security Officer may set CKA_TRUSTED, and an SO session may only create public
 * objects (SoftHSM2's access rules) — whose values SoftHSM2 stores unencrypted. So the key is
 * made in two steps, never touching the disk in the clear:
 * 1. as the SO, C_GenerateKey of a public, trusted *session* object (memory only);
 * 2. log out, log in as the user, C_CopyObject of it to a private token object (the copy
 *    keeps CKA_TRUSTED and is encrypted under the token key), then destroy the session one.
 * `kms hsm init` does this once (idempotent); the server only looks the key up.
 */
import pkcs11js from 'pkcs11js';
import { unavailable } from '../../domain/errors.js';
import { pkcs11Code } from './errors.js';
import { acquireModule, findTokenSlot, login, releaseModule } from './module.js';
import { findObjects } from './object-inventory.js';

type Handle = pkcs11js.Handle;

/** Not a UUID: the reconciler never lists it. */
export const MASTER_WRAPPING_KEY_ID = 'hsm-kms:master-wrap';

const masterKeyById: pkcs11js.Template = [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
  { type: pkcs11js.CKA_TOKEN, value: true },
  { type: pkcs11js.CKA_ID, value: Buffer.from(MASTER_WRAPPING_KEY_ID, 'utf8') },
];

const flag = (value: unknown): boolean => (Buffer.isBuffer(value) ? value[0] === 1 : value === true);

/** The protection the master must have; each entry is attribute → required value. */
const REQUIRED: ReadonlyArray<[number, boolean, string]> = [
  [pkcs11js.CKA_TRUSTED, true, 'CKA_TRUSTED'],
  [pkcs11js.CKA_PRIVATE, true, 'CKA_PRIVATE'],
  [pkcs11js.CKA_SENSITIVE, true, 'CKA_SENSITIVE'],
  [pkcs11js.CKA_EXTRACTABLE, false, 'CKA_EXTRACTABLE'],
  [pkcs11js.CKA_WRAP, true, 'CKA_WRAP'],
  [pkcs11js.CKA_UNWRAP, true, 'CKA_UNWRAP'],
  [pkcs11js.CKA_ENCRYPT, false, 'CKA_ENCRYPT'],
  [pkcs11js.CKA_DECRYPT, false, 'CKA_DECRYPT'],
];

export type MasterKeyLookup = { status: 'found'; handle: Handle } | { status: 'missing' } | { status: 'refused'; why: string };

/** Finds the master in a user session and checks its protection as the token reports it. */
export function findMasterWrappingKey(p11: pkcs11js.PKCS11, session: Handle): MasterKeyLookup {
  const [handle] = findObjects(p11, session, masterKeyById);
  if (handle === undefined) return { status: 'missing' };
  const values = p11.C_GetAttributeValue(
    session,
    handle,
    REQUIRED.map(([type]) => ({ type })),
  );
  const wrong = REQUIRED.filter(([, required], i) => flag(values[i]?.value) !== required).map(([, required, name]) => `${name} must be ${required}`);
  if (wrong.length > 0) return { status: 'refused', why: `the master wrapping key in the token is not protected as required (${wrong.join(', ')})` };
  return { status: 'found', handle };
}

export interface MasterKeyProvisioning {
  modulePath: string;
  tokenLabel: string;
  userPin: string;
  soPin: string;
}

/**
 * Creates the master wrapping key if the token has none (idempotent; `kms hsm init`). Must run
 * in a process where nobody is logged in to the token yet, or where the user already is and
 * the key exists: PKCS#11 login is per process, and the SO cannot log in beside the user.
 * @returns whether this call created it.
 */
export async function ensureMasterWrappingKey(options: MasterKeyProvisioning): Promise<{ created: boolean }> {
  const p11 = acquireModule(options.modulePath);
  try {
    const slot = findTokenSlot(p11, options.tokenLabel);
    const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      const alreadyUser = loginState(p11, session) === 'user';
      if (!alreadyUser) login(p11, session, options.userPin);
      const existing = findMasterWrappingKey(p11, session);
      if (existing.status === 'found') return { created: false };
      if (existing.status === 'refused') throw unavailable(`Refusing to replace it: ${existing.why}. Destroy it with the token's own tools first.`);
      if (alreadyUser) {
        throw unavailable('The master wrapping key must be created by `kms hsm init` before the service opens the token (the SO cannot log in beside the user).');
      }
      p11.C_Logout(session);
      loginSo(p11, session, options.soPin);
      let transient: Handle;
      try {
        transient = p11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
          { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
          { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
          // A public session object: the only kind the SO may create; it lives in memory only.
          { type: pkcs11js.CKA_TOKEN, value: false },
          { type: pkcs11js.CKA_PRIVATE, value: false },
          { type: pkcs11js.CKA_SENSITIVE, value: true },
          { type: pkcs11js.CKA_EXTRACTABLE, value: false },
          { type: pkcs11js.CKA_TRUSTED, value: true },
          { type: pkcs11js.CKA_WRAP, value: true },
          { type: pkcs11js.CKA_UNWRAP, value: true },
          { type: pkcs11js.CKA_ENCRYPT, value: false },
          { type: pkcs11js.CKA_DECRYPT, value: false },
          { type: pkcs11js.CKA_SIGN, value: false },
          { type: pkcs11js.CKA_VERIFY, value: false },
          { type: pkcs11js.CKA_DERIVE, value: false },
          { type: pkcs11js.CKA_ID, value: Buffer.from(MASTER_WRAPPING_KEY_ID, 'utf8') },
          { type: pkcs11js.CKA_LABEL, value: MASTER_WRAPPING_KEY_ID },
        ]);
      } finally {
        p11.C_Logout(session);
      }
      login(p11, session, options.userPin);
      try {
        const copy = p11.C_CopyObject(session, transient, [
          { type: pkcs11js.CKA_TOKEN, value: true },
          { type: pkcs11js.CKA_PRIVATE, value: true },
        ]);
        const check = findMasterWrappingKey(p11, session);
        if (check.status !== 'found') {
          p11.C_DestroyObject(session, copy);
          throw unavailable(`The token did not keep the master wrapping key's protection: ${check.status === 'refused' ? check.why : 'not found after creation'}.`);
        }
      } finally {
        p11.C_DestroyObject(session, transient);
      }
      return { created: true };
    } finally {
      try {
        p11.C_CloseSession(session);
      } catch {
        // Best effort.
      }
    }
  } finally {
    releaseModule(options.modulePath);
  }
}

function loginState(p11: pkcs11js.PKCS11, session: Handle): 'user' | 'other' {
  const { state } = p11.C_GetSessionInfo(session);
  // PKCS#11 CKS_RO_USER_FUNCTIONS (1) and CKS_RW_USER_FUNCTIONS (3); pkcs11js exports no CKS_* names.
  return state === 1 || state === 3 ? 'user' : 'other';
}

function loginSo(p11: pkcs11js.PKCS11, session: Handle, soPin: string): void {
  try {
    p11.C_Login(session, pkcs11js.CKU_SO, soPin);
  } catch (error) {
    const code = pkcs11Code(error);
    if (code === pkcs11js.CKR_PIN_INCORRECT || code === pkcs11js.CKR_PIN_INVALID || code === pkcs11js.CKR_PIN_LEN_RANGE) {
      throw unavailable('The HSM refused the SO PIN.');
    }
    throw error;
  }
}
