import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureMasterWrappingKey } from '../../src/hsm/pkcs11/master-key.js';
import { provisionSoftHsmToken } from '../../src/hsm/provision.js';

const SOFTHSM_MODULE_PATH = '/usr/lib/softhsm/libsofthsm2.so';

export interface TestToken {
  dataDir: string;
  label: string;
  userPin: string;
  soPin: string;
  confPath: string;
}

let token: Promise<TestToken> | undefined;

/**
 * One SoftHSM2 token per test process (vitest runs each file in its own fork): SoftHSM2 reads
 * SOFTHSM2_CONF once, at C_Initialize, so a process cannot switch tokens directories later.
 */
export function testToken(): Promise<TestToken> {
  token ??= (async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-test-'));
    // The token and its PIN files live only as long as this test process.
    process.once('exit', () => rmSync(dataDir, { recursive: true, force: true }));
    const label = 'kms-test';
    const userPin = randomBytes(8).toString('hex');
    const soPin = randomBytes(8).toString('hex');
    delete process.env.SOFTHSM2_CONF;
    const { confPath } = await provisionSoftHsmToken({ dataDir, tokenLabel: label, userPin, soPin, log: () => undefined });
    // As `kms hsm init` does: the master wrapping key of HsmEncryptedDatabase storage (SO step).
    await ensureMasterWrappingKey({ modulePath: SOFTHSM_MODULE_PATH, tokenLabel: label, userPin, soPin });
    return { dataDir, label, userPin, soPin, confPath };
  })();
  return token;
}
