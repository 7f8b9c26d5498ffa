import pkcs11js from 'pkcs11js';
import { acquireModule, findTokenSlot, releaseModule } from '../../src/hsm/pkcs11/module.js';
import type { TestServer } from './server.js';

/**
 * Runs `fn` against a server's token through a PKCS#11 session of the test's own, outside the
 * service, so tests see what really is in the HSM (and check what the service cannot do).
 */
export async function withTokenSession<T>(
  server: Pick<TestServer, 'config' | 'token'>,
  fn: (p11: pkcs11js.PKCS11, session: pkcs11js.Handle) => T | Promise<T>,
): Promise<T> {
  const p11 = acquireModule(server.config.hsm.modulePath);
  try {
    const session = p11.C_OpenSession(findTokenSlot(p11, server.token.label), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      return await fn(p11, session);
    } finally {
      p11.C_CloseSession(session);
    }
  } finally {
    releaseModule(server.config.hsm.modulePath);
  }
}
