import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsError } from '../../src/domain/errors.js';
import type { AesGcmSealed, WrappedVersionKey } from '../../src/hsm/hsm.js';
import { acquireModule, findTokenSlot, moduleGeneration, releaseModule, restartModule } from '../../src/hsm/pkcs11/module.js';
import { Pkcs11Hsm } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import { SOFTHSM_MODULE } from '../helpers/test-hsm.js';
import { type TestToken, testToken } from '../helpers/token.js';

/**
 * Issue 19, found by the multi-node probe: with HsmInternal storage one `kms serve` stopped
 * seeing the version keys other processes made (503 "not found in the HSM yet") for minutes.
 * The cause, read in SoftHSM2 2.6.1's source: a process that once reads the token's
 * token.object empty or half-written — which it is for a moment whenever another process logs
 * in (ObjectFile::store unlocks before fclose flushes) — marks its token view invalid and never
 * re-reads the token directory again (OSToken::index returns early while !valid); its
 * C_GetTokenInfo fails with CKR_GENERAL_ERROR from then on. Here the torn read is made on
 * purpose (token.object emptied for one C_GetTokenInfo, then put back), and a second OS process
 * makes a key: the adapter must notice, restart the PKCS#11 module once, and find it.
 */
const run = promisify(execFile);
const MODULE = SOFTHSM_MODULE;
let token: TestToken;
let hsm: Pkcs11Hsm;
let other: Pkcs11Hsm;
/** Restarts for a persistent miss without MISS_RESTART_INTERVAL_MS since the last restart (the tests above restart too). */
let eager: Pkcs11Hsm;
const warnings: string[] = [];

beforeAll(async () => {
  token = await testToken();
  process.env.SOFTHSM2_CONF = token.confPath;
  const open = (warn?: (message: string) => void, missRestartIntervalMs?: number) =>
    Pkcs11Hsm.open({ modulePath: MODULE, tokenLabel: token.label, pin: token.userPin, sessions: 2, importStrict: false, warn, missRestartIntervalMs });
  hsm = await open((message) => warnings.push(message));
  // A second adapter in this process shares the module (as a test's two servers do).
  other = await open();
  eager = await open((message) => warnings.push(message), 0);
}, 60_000);

afterAll(async () => {
  await eager?.close();
  await other?.close();
  await hsm?.close();
});

function tokenObjectPath(): string {
  const file = readdirSync(token.dataDir, { recursive: true }).map(String).find((name) => name.endsWith('token.object'));
  expect(file).toBeDefined();
  return path.join(token.dataDir, file!);
}

/** The torn read: token.object empty while this process reads the token's info once. */
function tearTokenObjectReadOnce(): void {
  const tokenObject = tokenObjectPath();
  const saved = readFileSync(tokenObject);
  const p11 = acquireModule(MODULE);
  try {
    const slot = findTokenSlot(p11, token.label);
    writeFileSync(tokenObject, Buffer.alloc(0));
    try {
      expect(() => p11.C_GetTokenInfo(slot)).toThrow(/CKR_GENERAL_ERROR/);
    } finally {
      writeFileSync(tokenObject, saved);
    }
  } finally {
    releaseModule(MODULE);
  }
}

/**
 * The generation race: the token's generation counter set back to what this process last saw,
 * as when it created an object at the moment another process did and recorded a counter that
 * already held the other's increment — SoftHSM2 then never lists the directory again.
 */
async function makeInAnotherProcessUnseen(versionId: string): Promise<void> {
  const file = readdirSync(token.dataDir, { recursive: true }).map(String).find((name) => name.endsWith(`${path.sep}generation`));
  expect(file).toBeDefined();
  const generation = path.join(token.dataDir, file!);
  // This process reads the token now, so the counter on disk is the one it has seen.
  expect(await eager.hasVersionKey(randomUUID())).toBe(false);
  const seen = readFileSync(generation);
  await generateInAnotherProcess(versionId);
  writeFileSync(generation, seen);
}

/** A version key made by another OS process, with the service's own adapter. */
async function generateInAnotherProcess(versionId: string): Promise<void> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'test/fixtures/generate-version-key.ts', token.label, versionId], {
    env: { ...process.env, SOFTHSM2_CONF: token.confPath, TEST_TOKEN_PIN: token.userPin },
  });
  expect(stdout).toContain(`generated ${versionId}`);
}

async function failureOf(p: Promise<unknown>): Promise<KmsError> {
  const error = await p.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(KmsError);
  return error as KmsError;
}

describe('a process whose SoftHSM2 token view went stale', () => {
  it('finds a key another process made: the module restarts once, and what the adapters held before still works', async () => {
    // Before: a token key of this process, an HsmEncryptedDatabase key held as a session object, the root key.
    const own = randomUUID();
    await hsm.generateVersionKey(own, { kind: 'aes', bits: 256 });
    const ownSealed = await hsm.encryptWithVersionKey(own, Buffer.from('own'), undefined);
    const wrappedId = randomUUID();
    const wrapped: WrappedVersionKey = { versionId: wrappedId, wrapped: (await hsm.generateWrappedVersionKey(wrappedId, { kind: 'aes', bits: 256 })).wrapped };
    const wrappedSealed = await hsm.encryptWithWrappedKey(wrapped, Buffer.from('wrapped'), undefined);
    const rootSealed = await hsm.sealWithRootKey(Buffer.from('root'));
    const otherSealed = await other.encryptWithVersionKey(own, Buffer.from('other'), undefined);
    const generation = moduleGeneration(MODULE);

    tearTokenObjectReadOnce();
    const foreign = randomUUID();
    await generateInAnotherProcess(foreign);

    const sealed = await hsm.encryptWithVersionKey(foreign, Buffer.from('found'), undefined);
    expect(moduleGeneration(MODULE)).toBe(generation + 1);
    expect(warnings.filter((w) => w.includes('restarting the PKCS#11 module'))).toHaveLength(1);
    expect((await hsm.decryptWithVersionKey(foreign, sealed, undefined)).toString()).toBe('found');
    expect((await hsm.decryptWithVersionKey(own, ownSealed, undefined)).toString()).toBe('own');
    expect((await hsm.decryptWithWrappedKey(wrapped, wrappedSealed, undefined)).toString()).toBe('wrapped');
    expect((await hsm.unsealWithRootKey(rootSealed)).toString()).toBe('root');
    // The second adapter reopens on its next call and never uses a handle of the old generation.
    expect((await other.decryptWithVersionKey(own, otherSealed, undefined)).toString()).toBe('other');
    expect((await other.decryptWithVersionKey(foreign, sealed, undefined)).toString()).toBe('found');
    expect(await other.hasVersionKey(foreign)).toBe(true);
    // A tampered ciphertext is still refused, not taken for a stale view.
    const tampered: AesGcmSealed = { ...sealed, tag: Buffer.alloc(16) };
    expect((await failureOf(hsm.decryptWithVersionKey(foreign, tampered, undefined))).code).toBe('InvalidCiphertext');
    expect(moduleGeneration(MODULE)).toBe(generation + 1);
  }, 60_000);

  it('a destroy restarts too, rather than leave another process\'s object behind (a key deletion, a reset)', async () => {
    const generation = moduleGeneration(MODULE);
    tearTokenObjectReadOnce();
    const foreign = randomUUID();
    await generateInAnotherProcess(foreign);
    expect(await hsm.destroyVersionKey(foreign)).toBe(true);
    expect(moduleGeneration(MODULE)).toBe(generation + 1);
    expect(await other.hasVersionKey(foreign)).toBe(false);
  }, 60_000);

  it('the reconciler\'s listing restarts too, rather than miss another process\'s objects (it would flag their versions)', async () => {
    const generation = moduleGeneration(MODULE);
    tearTokenObjectReadOnce();
    const foreign = randomUUID();
    await generateInAnotherProcess(foreign);
    expect((await hsm.listObjectIds()).versionKeys).toContain(foreign);
    expect(moduleGeneration(MODULE)).toBe(generation + 1);
  }, 60_000);

  it('a key made elsewhere after the restart is found too; objects nobody made are 503s and restart at most once in 30 s', async () => {
    const generation = moduleGeneration(MODULE);
    const later = randomUUID();
    await generateInAnotherProcess(later);
    const sealed = await hsm.encryptWithVersionKey(later, Buffer.from('later'), undefined);
    expect((await hsm.decryptWithVersionKey(later, sealed, undefined)).toString()).toBe('later');
    expect(moduleGeneration(MODULE)).toBe(generation);
    for (let i = 0; i < 2; i++) {
      const absent = await failureOf(hsm.encryptWithVersionKey(randomUUID(), Buffer.from('x'), undefined));
      expect({ code: absent.code, kind: absent.kind }).toEqual({ code: 'ServiceUnavailableTemporary', kind: 'unavailable' });
    }
    expect(await hsm.hasVersionKey(randomUUID())).toBe(false);
    // A persistent miss may restart once (none in the last 30 s when this test runs alone), never twice.
    expect(moduleGeneration(MODULE) - generation).toBeLessThanOrEqual(1);
  }, 60_000);
});

describe('a process that starts while another one rewrites token.object', () => {
  const openTorn = async (mode: 'restore' | 'keep-empty') =>
    (
      await run(process.execPath, ['--import', 'tsx', 'test/fixtures/open-with-torn-token-object.ts', token.label, tokenObjectPath(), mode], {
        env: { ...process.env, SOFTHSM2_CONF: token.confPath, TEST_TOKEN_PIN: token.userPin },
      })
    ).stdout.trim();

  it('opens the token on a later try, the library initialized afresh', async () => {
    expect(await openTorn('restore')).toBe('opened');
  }, 60_000);

  it('still says clearly that no token is there when it stays unreadable', async () => {
    expect(await openTorn('keep-empty')).toBe('failed: Service Unavailable Temporary. No initialized token labelled "kms-test" was found; run `kms hsm init`.');
    // The token is whole again for this process.
    expect((await hsm.randomBytes(8)).length).toBe(8);
  }, 60_000);
});

describe('a process that missed another process\'s object while its token view looks healthy', () => {
  it('restarts the module once the re-search found nothing, and serves the key; a key truly absent soon after restarts nothing', async () => {
    const generation = moduleGeneration(MODULE);
    const foreign = randomUUID();
    await makeInAnotherProcessUnseen(foreign);
    const sealed = await eager.encryptWithVersionKey(foreign, Buffer.from('seen at last'), undefined);
    expect(moduleGeneration(MODULE)).toBe(generation + 1);
    expect(warnings.filter((w) => w.includes('stayed invisible'))).toHaveLength(1);
    expect((await other.decryptWithVersionKey(foreign, sealed, undefined)).toString()).toBe('seen at last');
    // The default interval: a restart just happened, so a miss is the usual 503, not another restart.
    const absent = await failureOf(hsm.encryptWithVersionKey(randomUUID(), Buffer.from('x'), undefined));
    expect(absent.code).toBe('ServiceUnavailableTemporary');
    expect(moduleGeneration(MODULE)).toBe(generation + 1);
  }, 60_000);
});

describe('a restart whose fresh library read the token torn', () => {
  it('is retried by the next call, which reopens the adapter, instead of leaving it on a dead slot', async () => {
    const own = randomUUID();
    await hsm.generateVersionKey(own, { kind: 'aes', bits: 256 });
    const sealed = await hsm.encryptWithVersionKey(own, Buffer.from('still here'), undefined);
    const tokenObject = tokenObjectPath();
    const saved = readFileSync(tokenObject);
    writeFileSync(tokenObject, Buffer.alloc(0));
    try {
      expect(await restartModule(MODULE)).toBe(true);
    } finally {
      writeFileSync(tokenObject, saved);
    }
    expect((await hsm.decryptWithVersionKey(own, sealed, undefined)).toString()).toBe('still here');
    expect((await other.decryptWithVersionKey(own, sealed, undefined)).toString()).toBe('still here');
  }, 60_000);
});
