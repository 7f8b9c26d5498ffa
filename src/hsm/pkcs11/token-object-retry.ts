/**
 * A transient token failure on object creation, tried again. SoftHSM2 2.6.1 now and then
 * answers CKR_GENERAL_ERROR (or CKR_TEMPLATE_INCONSISTENT: errors.ts isTransientCreationFailure)
 * to a call that creates a token object (C_GenerateKey, C_GenerateKeyPair, C_UnwrapKey,
 * C_CreateObject) while several busy processes share the
 * machine — seen about once in 3,000 generations with six test processes on two CPUs — and a
 * second try succeeds. Without this the caller gets a 503 (or, for an import, a refusal of
 * good material) for a request the token can serve.
 */
import pkcs11js from 'pkcs11js';
import { isTransientCreationFailure } from './errors.js';
import { findObjects } from './object-inventory.js';

/** Tries in all of a token-object creation that the token failed transiently. */
export const TOKEN_OBJECT_ATTEMPTS = 3;

/**
 * Runs `create` (which makes token objects whose CKA_ID is `id`) again when the token answers
 * a transient failure (isTransientCreationFailure), up to TOKEN_OBJECT_ATTEMPTS tries. SoftHSM2
 * destroys a half-made object itself; anything left under `id` is destroyed here before the next try, so the id never ends
 * with two objects. The last failure is thrown as it came.
 */
export async function retryingTransientTokenFailure<T>(
  p11: pkcs11js.PKCS11,
  session: pkcs11js.Handle,
  id: string,
  create: () => T | Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await create();
    } catch (error) {
      if (!isTransientCreationFailure(error) || attempt >= TOKEN_OBJECT_ATTEMPTS) throw error;
      const leftovers = findObjects(p11, session, [
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_ID, value: Buffer.from(id, 'utf8') },
      ]);
      for (const handle of leftovers) p11.C_DestroyObject(session, handle);
    }
  }
}
