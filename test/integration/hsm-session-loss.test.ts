import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireModule, findTokenSlot, releaseModule } from '../../src/hsm/pkcs11/module.js';
import { Pkcs11Hsm } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import { KmsError } from '../../src/domain/errors.js';
import { SOFTHSM_MODULE, openTestHsm } from '../helpers/test-hsm.js';
import type { TestToken } from '../helpers/token.js';

/**
 * Issue 19, HSM faults: every session of the process closed under the service (C_CloseAllSessions
 * through the module handle the adapter shares, which also logs the token out). The call that
 * meets it answers 503 ServiceUnavailableTemporary; the adapter re-opens its sessions and logs
 * in again by itself, so the next calls work: version keys, the root key, the token MAC key.
 */
const MODULE = SOFTHSM_MODULE;
let hsm: Pkcs11Hsm;
let token: TestToken;
const versionId = '7d0c4d9e-2a51-4c1e-9d8b-3f4a5b6c7d8e';

beforeAll(async () => {
  ({ hsm, token } = await openTestHsm(4));
  await hsm.generateVersionKey(versionId, { kind: 'aes', bits: 256 });
});

afterAll(async () => {
  await hsm?.destroyVersionKey(versionId).catch(() => undefined);
  await hsm?.close();
});

function closeAllSessions(): void {
  const p11 = acquireModule(MODULE);
  try {
    p11.C_CloseAllSessions(findTokenSlot(p11, token.label));
  } finally {
    releaseModule(MODULE);
  }
}

/** 'ok', or the error code of a KmsError (anything else is rethrown). */
async function outcome(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (error) {
    if (error instanceof KmsError) return error.code;
    throw error;
  }
}

describe('sessions closed under the service', () => {
  it('the call that meets it is a 503; the next ones work again, without a restart', async () => {
    const sealed = await hsm.encryptWithVersionKey(versionId, Buffer.from('before'), undefined);
    const rootSealed = await hsm.sealWithRootKey(Buffer.from('root'), Buffer.from('aad'));
    for (let round = 0; round < 2; round++) {
      closeAllSessions();
      const first = await outcome(() => hsm.decryptWithVersionKey(versionId, sealed, undefined));
      expect(['ok', 'ServiceUnavailableTemporary']).toContain(first);
      // Every session the pool held was closed: each may fail once more, never with a 500.
      const answers: string[] = [];
      for (let i = 0; i < 6; i++) {
        answers.push(await outcome(() => hsm.decryptWithVersionKey(versionId, sealed, undefined)));
        answers.push(await outcome(() => hsm.unsealWithRootKey(rootSealed, Buffer.from('aad'))));
        answers.push(await outcome(() => hsm.sealWithRootKey(Buffer.from('x'), Buffer.from('y'))));
      }
      expect(answers.filter((a) => a !== 'ok' && a !== 'ServiceUnavailableTemporary')).toEqual([]);
      expect(answers.slice(-6)).toEqual(Array(6).fill('ok'));
      expect((await hsm.decryptWithVersionKey(versionId, sealed, undefined)).toString()).toBe('before');
    }
  });
});
