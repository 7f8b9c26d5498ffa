import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wrapKeyMaterial } from '../../src/domain/client-wrap.js';
import { FAULT_POINTS } from '../../src/fault-points.js';
import { runSweep } from '../../src/jobs/sweeper.js';
import { reconcileHsmObjects } from '../../src/services/reconciler.js';
import { decryptBlobWithMaterial } from '../helpers/byok.js';
import { createInstanceIn, createKeyIn } from '../helpers/fixtures.js';
import { waitFor } from '../helpers/jobs.js';
import { encodeQuery, send, v1Params } from '../helpers/raw-rpc.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { startServeProcess, startWorkerProcess } from '../helpers/serve-process.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 19, fault points: a `kms serve` or `kms worker` of the test's deployment (same database,
 * token and queues) runs with one KMS_FAULT_POINTS point and SIGKILLs itself there; the deployment
 * then goes on (the test's own server answers and sweeps, as a restarted node would), the
 * reconciler runs, and what must hold holds: every committed version has its material and
 * decrypts its old ciphertexts, no token object without a committed row survives the reconciler,
 * each instance's quota use equals its versions, and the use case ends done exactly once.
 *
 * The normal suite runs one point per use case (SHORT); `npm run test:soak` runs all of them.
 */
const SHORT = [
  'CreateKey:after-hsm',
  'ImportKeyMaterial:after-commit',
  'DeleteKeyMaterial:after-hsm',
  'CreateKeyVersion:before-hsm',
  'rotation:after-hsm',
  'material-expiry:after-commit',
  'key-deletion:after-hsm',
  'DisableKey:before-publish',
  'UpdateAlias:before-publish',
];
const POINTS = process.env.KMS_SOAK === '1' ? FAULT_POINTS : SHORT;

let server: TestServer;
let call: CallApi;
let wrappedInstanceId: string;
/** Ciphertexts that must decrypt after every fault (those of deleted keys or expired material leave). */
const ciphertexts = new Map<string, { keyId: string; plaintext: string }>();

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  wrappedInstanceId = await createInstanceIn(server, { type: 'HSM', keyQuota: 200, qps: 1000, keyStorageMechanism: 'HsmEncryptedDatabase' });
});

afterAll(async () => {
  await server?.stop();
});

async function encryptAndRemember(keyId: string): Promise<string> {
  const plaintext = `kept ${randomUUID()}`;
  const blob = (await call('Encrypt', { KeyId: keyId, Plaintext: plaintext })).CiphertextBlob as string;
  ciphertexts.set(blob, { keyId, plaintext });
  return blob;
}

function forgetCiphertextsOf(keyId: string): void {
  for (const [blob, made] of ciphertexts) if (made.keyId === keyId) ciphertexts.delete(blob);
}

const db = () => server.kms.deps.db;
// Due dates are set a minute back in SQL (the service's dates are whole milliseconds, as JavaScript's).

/** Sends a signed RPC to the faulty node; its answer never comes (the node dies at its point). */
async function sendToDying(endpoint: string, action: string, params: Record<string, string>, headers: Record<string, string> = {}): Promise<void> {
  const answer = await send(endpoint, { path: `/?${encodeQuery(v1Params(action, params, server.admin))}`, headers }).catch((error: Error) => error);
  expect(answer, `${action} should have died at its fault point`).toBeInstanceOf(Error);
}

async function expectKilled(node: { child: { exitCode: number | null; signalCode: NodeJS.Signals | null }; output(): string }, point: string): Promise<void> {
  await waitFor(`the node to SIGKILL itself at ${point}`, () => node.child.signalCode !== null || node.child.exitCode !== null, 30_000);
  expect(node.child.signalCode, node.output().slice(-2000)).toBe('SIGKILL');
  expect(node.output()).toContain(`fault point ${point}: SIGKILL`);
}

/** What a restarted worker does first: the sweep finds the due work the dead one left. */
const sweepAsARestartedWorker = () => runSweep(server.kms.deps, server.kms.jobs.queues);

async function checkInvariants(): Promise<void> {
  // Two runs with no grace: an orphan is sighted, then destroyed.
  await reconcileHsmObjects(server.kms.deps, { graceMs: 0 });
  await reconcileHsmObjects(server.kms.deps, { graceMs: 0 });
  const objects = new Set((await server.kms.deps.hsm.listObjectIds()).versionKeys);
  const committed = new Set((await db().query<{ id: string }>("SELECT id FROM key_versions WHERE storage = 'token' AND has_material")).rows.map((r) => r.id));
  // Every committed version has its material; no object without a committed row survives.
  expect([...committed].filter((id) => !objects.has(id))).toEqual([]);
  expect([...objects].filter((id) => !committed.has(id))).toEqual([]);
  // Wrapped versions hold their blob in their own row: none without one.
  expect((await db().query("SELECT id FROM key_versions WHERE storage = 'wrapped' AND has_material AND wrapped_material IS NULL")).rows).toEqual([]);
  // Quota use equals versions, per instance.
  for (const instanceId of [server.hsmInstanceId, server.softwareInstanceId, wrappedInstanceId]) {
    const used = (await call('GetKmsInstanceQuotaInfos', { KmsInstanceId: instanceId, ResourceType: 'key' })).KmsInstanceQuotaInfos[0].UsedQuantity as number;
    const { rows } = await db().query<{ n: string }>('SELECT count(*) AS n FROM key_versions WHERE instance_id = $1', [instanceId]);
    expect(used, instanceId).toBe(Number(rows[0]!.n));
  }
  for (const [blob, made] of ciphertexts) {
    expect({ keyId: made.keyId, plaintext: (await call('Decrypt', { CiphertextBlob: blob })).Plaintext }).toEqual(made);
  }
}

/**
 * How soon a change the dead node never published must show here: the journal's poll (1 s) and
 * a loaded machine's slack, far below the cache's maximum age (60 s) that bounded it before.
 */
const JOURNAL_BOUND_MS = 10_000;

/** Whether an Encrypt under `keyId` here answers `expected`: the key id it used, or an error code. */
async function encryptAnswers(keyId: string, expected: string): Promise<boolean> {
  try {
    return (await call('Encrypt', { KeyId: keyId, Plaintext: 'probe' })).KeyId === expected;
  } catch (error) {
    return (await sdkError(() => Promise.reject(error))).code === expected;
  }
}

async function versionsOf(keyId: string): Promise<number> {
  return Number((await db().query<{ n: string }>('SELECT count(*) AS n FROM key_versions WHERE key_id = $1', [keyId])).rows[0]!.n);
}

async function importParams(keyId: string, material: Buffer) {
  const params = await call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
  const encrypted = wrapKeyMaterial(Buffer.from(params.PublicKey, 'base64'), 'RSAES_OAEP_SHA_256', material).toString('base64');
  return { KeyId: keyId, EncryptedKeyMaterial: encrypted, ImportToken: params.ImportToken as string };
}

/** One scenario per use case: drive it into the point on a faulty node, let the deployment go on, check the outcome. */
const scenarios: Record<string, (point: string) => Promise<void>> = {
  async CreateKey(point) {
    const node = await startServeProcess(server, { KMS_FAULT_POINTS: point });
    const token = randomUUID();
    const params = { DKMSInstanceId: server.hsmInstanceId, Description: `fault ${point} ${token}` };
    await sendToDying(node.endpoint, 'CreateKey', params, { 'x-kms-idempotency-key': token });
    await expectKilled(node, point);
    // The client retries with its token on another node: one key, whatever the crash left.
    const retry = await send(server.endpoint, { path: `/?${encodeQuery(v1Params('CreateKey', params, server.admin))}`, headers: { 'x-kms-idempotency-key': token } });
    expect(retry.status, retry.text).toBe(200);
    const keyId = (retry.body.KeyMetadata as { KeyId: string }).KeyId;
    expect((await db().query('SELECT id FROM keys WHERE description = $1', [params.Description])).rows).toEqual([{ id: keyId }]);
    await encryptAndRemember(keyId);
  },

  async ImportKeyMaterial(point) {
    const keyId = (await createKeyIn(call, server.hsmInstanceId, { Origin: 'EXTERNAL' })).keyId;
    const material = randomBytes(32);
    const request = await importParams(keyId, material);
    const node = await startServeProcess(server, { KMS_FAULT_POINTS: point });
    await sendToDying(node.endpoint, 'ImportKeyMaterial', request);
    await expectKilled(node, point);
    const state = (await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState as string;
    expect(state === 'Enabled' || state === 'PendingImport', state).toBe(true);
    if (state === 'PendingImport') await call('ImportKeyMaterial', request);
    const blob = await encryptAndRemember(keyId);
    // The material in the token is the material imported, whatever the crash.
    expect(decryptBlobWithMaterial(blob, material).plaintext).toBe(ciphertexts.get(blob)!.plaintext);
  },

  async DeleteKeyMaterial(point) {
    // Found by a multi-process probe: the token objects were destroyed before the commit, so a
    // kill between the two left the key Enabled with its material gone for good.
    const keyId = (await createKeyIn(call, server.hsmInstanceId, { Origin: 'EXTERNAL' })).keyId;
    const material = randomBytes(32);
    await call('ImportKeyMaterial', await importParams(keyId, material));
    const plaintext = `before the deletion ${randomUUID()}`;
    const blob = (await call('Encrypt', { KeyId: keyId, Plaintext: plaintext })).CiphertextBlob as string;
    const node = await startServeProcess(server, { KMS_FAULT_POINTS: point });
    await sendToDying(node.endpoint, 'DeleteKeyMaterial', { KeyId: keyId });
    await expectKilled(node, point);
    // Every step of this scope comes after the commit: the material is deleted as far as any
    // node can tell, and what the dead node left in the token goes to the reconciler.
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('PendingImport');
    await checkInvariants();
    // The same material again: the old ciphertext decrypts again (seed 000).
    await call('ImportKeyMaterial', await importParams(keyId, material));
    ciphertexts.set(blob, { keyId, plaintext });
  },

  // Found by a multi-process probe: a writer killed between its COMMIT and its PUBLISH left the
  // other nodes serving a disabled key, or an alias's old key, for the cache's maximum age (60 s).
  // The cache-change journal bounds it to about a second (KMS_CACHE_JOURNAL_POLL_MS).
  async DisableKey(point) {
    const keyId = (await createKeyIn(call, server.softwareInstanceId)).keyId;
    await call('Encrypt', { KeyId: keyId, Plaintext: 'cached here' });
    const node = await startServeProcess(server, { KMS_FAULT_POINTS: point });
    await sendToDying(node.endpoint, 'DisableKey', { KeyId: keyId });
    await expectKilled(node, point);
    expect((await db().query('SELECT state FROM keys WHERE id = $1', [keyId])).rows).toEqual([{ state: 'Disabled' }]);
    await waitFor('this node to refuse the key disabled (and never published) by the dead one', () => encryptAnswers(keyId, 'Rejected.Disabled'), JOURNAL_BOUND_MS, 50);
  },

  async UpdateAlias(point) {
    const from = (await createKeyIn(call, server.softwareInstanceId)).keyId;
    const to = (await createKeyIn(call, server.softwareInstanceId)).keyId;
    const alias = `alias/fault-${randomUUID()}`;
    await call('CreateAlias', { AliasName: alias, KeyId: from });
    expect((await call('Encrypt', { KeyId: alias, Plaintext: 'cached here' })).KeyId).toBe(from);
    const node = await startServeProcess(server, { KMS_FAULT_POINTS: point });
    await sendToDying(node.endpoint, 'UpdateAlias', { AliasName: alias, KeyId: to });
    await expectKilled(node, point);
    await waitFor('this node to use the alias\'s new key, moved (and never published) by the dead one', () => encryptAnswers(alias, to), JOURNAL_BOUND_MS, 50);
  },

  async CreateKeyVersion(point) {
    const keyId = (await createKeyIn(call, wrappedInstanceId)).keyId;
    await encryptAndRemember(keyId);
    const node = await startServeProcess(server, { KMS_FAULT_POINTS: point });
    await sendToDying(node.endpoint, 'CreateKeyVersion', { KeyId: keyId });
    await expectKilled(node, point);
    expect([1, 2]).toContain(await versionsOf(keyId));
    await encryptAndRemember(keyId);
  },

  async rotation(point) {
    const keyId = (await createKeyIn(call, wrappedInstanceId, { EnableAutomaticRotation: true, RotationInterval: '604800s' })).keyId;
    await encryptAndRemember(keyId);
    await db().query("UPDATE keys SET next_rotation_date = date_trunc('milliseconds', now()) - interval '1 minute' WHERE id = $1", [keyId]);
    const worker = await startWorkerProcess(server, { KMS_FAULT_POINTS: point });
    await expectKilled(worker, point);
    await sweepAsARestartedWorker();
    // Rotated exactly once.
    expect(await versionsOf(keyId)).toBe(2);
    await encryptAndRemember(keyId);
  },

  async 'material-expiry'(point) {
    const keyId = (await createKeyIn(call, server.hsmInstanceId, { Origin: 'EXTERNAL' })).keyId;
    const material = randomBytes(32);
    const request = await importParams(keyId, material);
    await call('ImportKeyMaterial', { ...request, KeyMaterialExpireUnix: Math.floor(Date.now() / 1000) + 86_400 });
    const blob = await encryptAndRemember(keyId);
    await db().query("UPDATE key_versions SET material_expire_at = date_trunc('milliseconds', now()) - interval '1 minute' WHERE key_id = $1", [keyId]);
    const worker = await startWorkerProcess(server, { KMS_FAULT_POINTS: point });
    await expectKilled(worker, point);
    await sweepAsARestartedWorker();
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('PendingImport');
    ciphertexts.delete(blob);
    await checkInvariants();
    // The same material again: the old ciphertext decrypts again (seed 000).
    await call('ImportKeyMaterial', await importParams(keyId, material));
    ciphertexts.set(blob, { keyId, plaintext: decryptBlobWithMaterial(blob, material).plaintext });
  },

  async 'key-deletion'(point) {
    const keyId = (await createKeyIn(call, server.hsmInstanceId)).keyId;
    await encryptAndRemember(keyId);
    await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
    await db().query("UPDATE keys SET delete_date = date_trunc('milliseconds', now()) - interval '1 minute' WHERE id = $1", [keyId]);
    const worker = await startWorkerProcess(server, { KMS_FAULT_POINTS: point });
    await expectKilled(worker, point);
    await sweepAsARestartedWorker();
    expect((await sdkError(() => call('DescribeKey', { KeyId: keyId }))).code).toBe('Forbidden.KeyNotFound');
    forgetCiphertextsOf(keyId);
  },
};

describe('a node SIGKILLed at a fault point', () => {
  it.each(POINTS)('%s: the deployment goes on, and committed state is whole', async (point) => {
    await scenarios[point.split(':')[0]!]!(point);
    await checkInvariants();
  }, 120_000);

  it('KMS_FAULT_POINTS is refused with NODE_ENV=production and for an unknown point', async () => {
    await expect(startServeProcess(server, { KMS_FAULT_POINTS: 'CreateKey:after-hsm', NODE_ENV: 'production' })).rejects.toThrow(/refused with NODE_ENV=production/);
    await expect(startServeProcess(server, { KMS_FAULT_POINTS: 'CreateKey:after-lunch' })).rejects.toThrow(/unknown point\(s\) CreateKey:after-lunch/);
  });
});
