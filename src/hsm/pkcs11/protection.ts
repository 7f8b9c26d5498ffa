/**
 * DESIGN.md's lesson from openCryptoki (its C_UnwrapKey ignored CKA_SENSITIVE/CKA_EXTRACTABLE
 * in the template): after creating a key object, read its protection attributes back and
 * refuse an object whose value could leave the token.
 */
import pkcs11js from 'pkcs11js';
import { internalFailure } from '../../domain/errors.js';

type Handle = pkcs11js.Handle;

const flag = (value: unknown): boolean | undefined =>
  Buffer.isBuffer(value) ? value[0] === 1 : typeof value === 'boolean' ? value : undefined;

/** Whether the object is CKA_SENSITIVE=true and CKA_EXTRACTABLE=false, as the token reports it. */
export function isUnreadable(p11: pkcs11js.PKCS11, session: Handle, object: Handle): boolean {
  const [sensitive, extractable] = p11.C_GetAttributeValue(session, object, [
    { type: pkcs11js.CKA_SENSITIVE },
    { type: pkcs11js.CKA_EXTRACTABLE },
  ]);
  return flag(sensitive?.value) === true && flag(extractable?.value) === false;
}

/**
 * Destroys `objects` and throws unless `object` is unreadable. The caller passes every
 * object it just created (e.g. both halves of a pair) so nothing readable stays behind.
 * @throws InternalFailure
 */
export function assertUnreadable(p11: pkcs11js.PKCS11, session: Handle, object: Handle, objects: readonly Handle[] = [object]): void {
  if (isUnreadable(p11, session, object)) return;
  for (const handle of objects) {
    try {
      p11.C_DestroyObject(session, handle);
    } catch {
      // Best effort: the refusal below is what matters.
    }
  }
  throw internalFailure('The HSM created a key object whose value is readable (CKA_SENSITIVE/CKA_EXTRACTABLE not honoured); refused.');
}
