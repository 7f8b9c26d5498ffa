/**
 * The service's own keys in the token, created by `kms hsm init` (or at first start): the
 * root key (AES-256; seals SOFTWARE-tier material and secrets) and the import-token MAC key.
 */
import pkcs11js from 'pkcs11js';
import * as m from './mechanisms.js';
import { findObjects } from './object-inventory.js';

type Handle = pkcs11js.Handle;

/** CKA_IDs of the service's own keys; never UUIDs, so the reconciler never lists them. */
export const ROOT_KEY_ID = 'hsm-kms:root';
export const TOKEN_MAC_KEY_ID = 'hsm-kms:token-mac';

/** Finds or creates the root key and the import-token MAC key. */
export function ensureServiceKeys(p11: pkcs11js.PKCS11, session: Handle): { rootKey: Handle; macKey: Handle } {
  let [rootKey] = findObjects(p11, session, m.secretKeyById(ROOT_KEY_ID));
  if (!rootKey) {
    rootKey = p11.C_GenerateKey(
      session,
      m.aesKeyGen,
      m.aesKeyTemplate({ token: true, id: ROOT_KEY_ID, label: ROOT_KEY_ID, valueLength: 32, wrap: true }),
    );
  }
  let [macKey] = findObjects(p11, session, m.secretKeyById(TOKEN_MAC_KEY_ID));
  if (!macKey) {
    macKey = p11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_ID, value: Buffer.from(TOKEN_MAC_KEY_ID) },
      { type: pkcs11js.CKA_LABEL, value: TOKEN_MAC_KEY_ID },
    ]);
  }
  return { rootKey, macKey };
}
