import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsError } from '../../src/domain/errors.js';
import * as m from '../../src/hsm/pkcs11/mechanisms.js';
import { acquireModule, findTokenSlot, releaseModule } from '../../src/hsm/pkcs11/module.js';
import { Pkcs11Hsm, findObjects } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import { SOFTHSM_MODULE, openTestHsm } from '../helpers/test-hsm.js';
import type { TestToken } from '../helpers/token.js';
import pkcs11js from 'pkcs11js';

/**
 * Found by the multi-node soak (issue 19): a Decrypt whose cached handle names a version key
 * that another process has just destroyed (a worker's key deletion or material expiry, its
 * commit still in flight) answered 500 InternalFailure (CKR_OBJECT_HANDLE_INVALID, and the
 * re-search found nothing). The object is gone: a retryable 503, never a 500. Here the object
 * is destroyed through a session of the test's own while the adapter holds its handle.
 */
const MODULE = SOFTHSM_MODULE;
let hsm: Pkcs11Hsm;
let token: TestToken;
const versionId = '3b9f1c2e-6d4a-4f8b-a1c7-5e2d9b0a4c61';

beforeAll(async () => {
  ({ hsm, token } = await openTestHsm(2));
  await hsm.generateVersionKey(versionId, { kind: 'aes', bits: 256 });
});

afterAll(async () => {
  await hsm?.destroyVersionKey(versionId).catch(() => undefined);
  await hsm?.close();
});

function destroyOutsideTheAdapter(id: string): number {
  const p11 = acquireModule(MODULE);
  try {
    const session = p11.C_OpenSession(findTokenSlot(p11, token.label), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      const handles = findObjects(p11, session, m.secretKeyById(id));
      for (const handle of handles) p11.C_DestroyObject(session, handle);
      return handles.length;
    } finally {
      p11.C_CloseSession(session);
    }
  } finally {
    releaseModule(MODULE);
  }
}

describe('a version key destroyed under a cached handle', () => {
  it('Decrypt answers 503 ServiceUnavailableTemporary, not 500', async () => {
    // Encrypt and decrypt once: the adapter now holds the object's handle.
    const sealed = await hsm.encryptWithVersionKey(versionId, Buffer.from('before'), undefined);
    expect((await hsm.decryptWithVersionKey(versionId, sealed, undefined)).toString()).toBe('before');
    expect(destroyOutsideTheAdapter(versionId)).toBe(1);

    const failure = await hsm.decryptWithVersionKey(versionId, sealed, undefined).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(KmsError);
    expect({ code: (failure as KmsError).code, kind: (failure as KmsError).kind }).toEqual({ code: 'ServiceUnavailableTemporary', kind: 'unavailable' });
  });
});
