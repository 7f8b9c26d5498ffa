import { randomUUID } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureMasterWrappingKey } from '../../src/hsm/pkcs11/master-key.js';
import { acquireModule, findTokenSlot, releaseModule } from '../../src/hsm/pkcs11/module.js';
import { findObjects } from '../../src/hsm/pkcs11/object-inventory.js';
import { Pkcs11Hsm } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import type { WrappedVersionKey } from '../../src/hsm/hsm.js';
import { type TestToken, testToken } from '../helpers/token.js';

/**
 * The adapter's HsmEncryptedDatabase half on a real SoftHSM2 token, without a server: the
 * unwrapped-key LRU stays within its bound (evicted session objects are destroyed), keys come
 * back after eviction, a lost owner session is survived by unwrapping again, and
 * `kms hsm init`'s master-key step is idempotent.
 */
const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const CAPACITY = 3;
let token: TestToken;
let hsm: Pkcs11Hsm;

beforeAll(async () => {
  token = await testToken();
  hsm = await Pkcs11Hsm.open({ modulePath: MODULE, tokenLabel: token.label, pin: token.userPin, sessions: 4, importStrict: false, unwrappedKeyCacheSize: CAPACITY });
});

afterAll(async () => {
  await hsm?.close();
});

/** Unwrapped copies of these versions now in the token (session objects carry the version id). */
function sessionObjectsOf(versionIds: readonly string[]): number {
  const p11 = acquireModule(MODULE);
  try {
    const session = p11.C_OpenSession(findTokenSlot(p11, token.label), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      return versionIds.reduce(
        (n, id) => n + findObjects(p11, session, [{ type: pkcs11js.CKA_TOKEN, value: false }, { type: pkcs11js.CKA_ID, value: Buffer.from(id, 'utf8') }]).length,
        0,
      );
    } finally {
      p11.C_CloseSession(session);
    }
  } finally {
    releaseModule(MODULE);
  }
}

async function newKeys(n: number): Promise<WrappedVersionKey[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const versionId = randomUUID();
      return { versionId, wrapped: (await hsm.generateWrappedVersionKey(versionId, { kind: 'aes', bits: 256 })).wrapped };
    }),
  );
}

describe('unwrapped HsmEncryptedDatabase keys', () => {
  it('generation leaves no object in the token', async () => {
    const keys = await newKeys(4);
    expect(sessionObjectsOf(keys.map((k) => k.versionId))).toBe(0);
  });

  it('the LRU holds at most its bound of session objects; evicted keys are unwrapped again when used', async () => {
    const keys = await newKeys(CAPACITY + 3);
    const sealed = [];
    for (const key of keys) sealed.push(await hsm.encryptWithWrappedKey(key, Buffer.from(key.versionId), undefined));
    expect(sessionObjectsOf(keys.map((k) => k.versionId))).toBe(CAPACITY);
    for (const [i, key] of keys.entries()) {
      expect((await hsm.decryptWithWrappedKey(key, sealed[i]!, undefined)).toString()).toBe(key.versionId);
    }
    expect(sessionObjectsOf(keys.map((k) => k.versionId))).toBe(CAPACITY);
    // Forgetting destroys the object at once.
    const last = keys.at(-1)!;
    hsm.forgetWrappedKey(last.versionId);
    expect(sessionObjectsOf([last.versionId])).toBe(0);
  });

  it('a lost owner session (every unwrapped object gone with it) is survived: the key is unwrapped again once', async () => {
    const [key] = await newKeys(1);
    const first = await hsm.encryptWithWrappedKey(key!, Buffer.from('before'), undefined);
    // Close the session that owns the unwrapped objects, under the service.
    const owner = (hsm as unknown as { unwrapped: { owner: pkcs11js.Handle } }).unwrapped.owner;
    const p11 = acquireModule(MODULE);
    try {
      p11.C_CloseSession(owner);
    } finally {
      releaseModule(MODULE);
    }
    expect(sessionObjectsOf([key!.versionId])).toBe(0);
    expect((await hsm.decryptWithWrappedKey(key!, first, undefined)).toString()).toBe('before');
    expect(sessionObjectsOf([key!.versionId])).toBe(1);
  });

  it('a blob that is not a KWP blob under this master is a clear InternalFailure', async () => {
    const [key] = await newKeys(1);
    const tampered = Buffer.from(key!.wrapped);
    tampered[tampered.length - 1]! ^= 0xff;
    await expect(hsm.encryptWithWrappedKey({ versionId: key!.versionId, wrapped: tampered }, Buffer.from('x'), undefined)).rejects.toMatchObject({
      code: 'InternalFailure',
      message: expect.stringContaining('does not unwrap under the HSM master key'),
    });
  });

  it('creating the master wrapping key is idempotent; with the user logged in it is found, not re-created', async () => {
    await expect(ensureMasterWrappingKey({ modulePath: MODULE, tokenLabel: token.label, userPin: token.userPin, soPin: token.soPin })).resolves.toEqual({
      created: false,
    });
    expect(await hsm.hasMasterWrappingKey()).toBe(true);
  });
});
