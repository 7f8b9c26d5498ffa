/**
 * Object searches over one session: the handle search every lookup uses, and the inventory
 * the reconciler compares with Postgres (`Hsm.listObjectIds`).
 */
import pkcs11js from 'pkcs11js';

type Handle = pkcs11js.Handle;

/** C_FindObjects over `template`, in batches, always closing the search. */
export function findObjects(p11: pkcs11js.PKCS11, session: Handle, template: pkcs11js.Template): Handle[] {
  p11.C_FindObjectsInit(session, template);
  try {
    const result: Handle[] = [];
    for (;;) {
      const batch = p11.C_FindObjects(session, 16);
      if (batch.length === 0) return result;
      result.push(...batch);
    }
  } finally {
    p11.C_FindObjectsFinal(session);
  }
}

/**
 * Every id the service gives an object is a UUID (version ids, wrapping key ids); its own keys
 * have `hsm-kms:…` ids. Anything else in the token belongs to someone else and is never listed.
 */
const SERVICE_OBJECT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The UUID CKA_IDs of the persistent objects of one class (duplicates listed once), narrowed
 * by `extra` attributes (e.g. CKA_UNWRAP, which tells a wrapping pair from a version pair).
 */
export function listObjectIdsOfClass(p11: pkcs11js.PKCS11, session: Handle, objectClass: number, extra: pkcs11js.Template = []): string[] {
  const ids = new Set<string>();
  for (const handle of findObjects(p11, session, [
    { type: pkcs11js.CKA_CLASS, value: objectClass },
    { type: pkcs11js.CKA_TOKEN, value: true },
    ...extra,
  ])) {
    const [attribute] = p11.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_ID }]);
    const raw = attribute?.value;
    if (!Buffer.isBuffer(raw)) continue;
    const id = raw.toString('utf8');
    if (SERVICE_OBJECT_ID.test(id)) ids.add(id);
  }
  return [...ids];
}
