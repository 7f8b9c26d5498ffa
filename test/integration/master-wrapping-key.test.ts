import { randomBytes, randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureMasterWrappingKey } from '../../src/hsm/pkcs11/master-key.js';
import { Pkcs11Hsm } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import { provisionSoftHsmToken } from '../../src/hsm/provision.js';

/**
 * A token provisioned before HsmEncryptedDatabase existed (no master wrapping key): the
 * service opens it and keeps serving HsmInternal, refuses wrapped storage with a 503 that names
 * `kms hsm init`; the master-key step of `kms hsm init` then adds the key (the SO part), once.
 */
const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
let dataDir: string;
const label = 'no-master';
const userPin = randomBytes(8).toString('hex');
const soPin = randomBytes(8).toString('hex');
const open = () => Pkcs11Hsm.open({ modulePath: MODULE, tokenLabel: label, pin: userPin, sessions: 2, importStrict: false });

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kms-master-'));
  delete process.env.SOFTHSM2_CONF;
  await provisionSoftHsmToken({ dataDir, tokenLabel: label, userPin, soPin, log: () => undefined });
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe('a token without the master wrapping key', () => {
  it('opens; HsmInternal works; wrapped storage is ServiceUnavailableTemporary naming `kms hsm init`', async () => {
    const hsm = await open();
    try {
      expect(await hsm.hasMasterWrappingKey()).toBe(false);
      const versionId = randomUUID();
      await hsm.generateVersionKey(versionId, { kind: 'aes', bits: 256 });
      expect(await hsm.hasVersionKey(versionId)).toBe(true);
      await expect(hsm.generateWrappedVersionKey(randomUUID(), { kind: 'aes', bits: 256 })).rejects.toMatchObject({
        code: 'ServiceUnavailableTemporary',
        message: expect.stringContaining('kms hsm init'),
      });
      // The SO cannot log in beside this process's user session: refused clearly, nothing made.
      await expect(ensureMasterWrappingKey({ modulePath: MODULE, tokenLabel: label, userPin, soPin })).rejects.toMatchObject({
        code: 'ServiceUnavailableTemporary',
        message: expect.stringContaining('before the service opens the token'),
      });
    } finally {
      await hsm.close();
    }
  });

  it('`kms hsm init`\'s step adds it once (a wrong SO PIN is refused without the PIN in the message); the service then uses it', async () => {
    const wrongSo = 'not-the-so-pin';
    const refusal = await ensureMasterWrappingKey({ modulePath: MODULE, tokenLabel: label, userPin, soPin: wrongSo }).catch((e: Error) => e);
    expect(refusal).toMatchObject({ code: 'ServiceUnavailableTemporary', message: expect.stringContaining('The HSM refused the SO PIN.') });
    expect((refusal as Error).message).not.toContain(wrongSo);

    expect(await ensureMasterWrappingKey({ modulePath: MODULE, tokenLabel: label, userPin, soPin })).toEqual({ created: true });
    expect(await ensureMasterWrappingKey({ modulePath: MODULE, tokenLabel: label, userPin, soPin })).toEqual({ created: false });
    const hsm = await open();
    try {
      expect(await hsm.hasMasterWrappingKey()).toBe(true);
      const versionId = randomUUID();
      const key = { versionId, wrapped: (await hsm.generateWrappedVersionKey(versionId, { kind: 'aes', bits: 256 })).wrapped };
      const sealed = await hsm.encryptWithWrappedKey(key, Buffer.from('now wrapped'), undefined);
      expect((await hsm.decryptWithWrappedKey(key, sealed, undefined)).toString()).toBe('now wrapped');
    } finally {
      await hsm.close();
    }
  });
});
