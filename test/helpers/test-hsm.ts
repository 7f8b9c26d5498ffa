import { Pkcs11Hsm } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import { type TestToken, testToken } from './token.js';

/** Debian's SoftHSM2 module, as the tests load it. */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/** This test process's token (helpers/token.ts), opened by the service's own PKCS#11 adapter. */
export async function openTestHsm(sessions: number): Promise<{ hsm: Pkcs11Hsm; token: TestToken }> {
  const token = await testToken();
  process.env.SOFTHSM2_CONF = token.confPath;
  const hsm = await Pkcs11Hsm.open({ modulePath: SOFTHSM_MODULE, tokenLabel: token.label, pin: token.userPin, sessions, importStrict: false });
  return { hsm, token };
}
