import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wrapKeyMaterial } from '../../src/domain/client-wrap.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';

/**
 * The time machine from a user's seat (issue 14 §4): `KMS_CLOCK=manual npm run quickstart` in a
 * new data dir, keys made through the real SDK, then `kms clock advance 8d` from the CLI — and
 * the week's due work happens at once through the quickstart's own workers: 7-day rotations
 * (seed 002 on both tiers, and a key suspended over its due date), an import-based material
 * expiry one day out, a 7-day scheduled deletion. The repeatable sweeper runs hourly here and
 * the delayed jobs wait days of wall clock, so only what the CLI does (promote the due jobs,
 * queue a sweep) can have done it in time.
 */
const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');
const DAY_S = 86_400;
/** Time for the workers to do the due work after the clock moved (CI machines are slow; nothing here waits on it). */
const DUE_WORK_DEADLINE_MS = 60_000;

let child: ChildProcess | undefined;
let output = '';
let dataDir: string;
let call: CallApi;

function withoutOuterSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'SOFTHSM2_CONF', 'KMS_HSM_PIN', 'KMS_HSM_SO_PIN', 'KMS_DB_POOL_SIZE', 'KMS_QUEUE_PREFIX', 'KMS_CLOCK']) {
    delete copy[name];
  }
  return copy;
}

function startManualQuickstart(): Promise<string> {
  const env = {
    ...withoutOuterSettings(process.env),
    KMS_DATA_DIR: dataDir,
    KMS_PORT: '0',
    KMS_LOG_LEVEL: 'warn',
    KMS_CLOCK: 'manual',
    KMS_SWEEP_INTERVAL_SECONDS: '3600',
  };
  child = spawn(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), 'quickstart'], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`quickstart did not start in time:\n${output}`)), 90_000);
    child?.stdout?.on('data', () => {
      const match = /Endpoint\s+(127\.0\.0\.1:\d+)/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child?.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`quickstart exited (${code}):\n${output}`));
    });
  });
}

/** `kms clock …` as a user runs it next to the quickstart: attached through runtime.json. */
interface ClockShown {
  Now: string;
  OffsetSeconds: number;
  NotifiedProcesses?: number;
  PromotedJobs?: Record<string, number>;
}

async function clockCli(...args: string[]): Promise<ClockShown> {
  const env = { ...withoutOuterSettings(process.env), KMS_DATA_DIR: dataDir };
  const { stdout } = await run(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), 'clock', ...args], { cwd: repoRoot, env });
  return JSON.parse(stdout) as ClockShown;
}

async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + DUE_WORK_DEADLINE_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${DUE_WORK_DEADLINE_MS} ms; the quickstart said:\n${output.slice(-4_000)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Whether DescribeKey answers Forbidden.KeyNotFound (false while the key is still there). */
async function isGone(keyId: string | undefined): Promise<boolean> {
  const described = call('DescribeKey', { KeyId: keyId }).then(
    () => undefined,
    (error: unknown) => error,
  );
  const error = await described;
  if (error === undefined) return false;
  return (await sdkError(() => Promise.reject(error))).code === 'Forbidden.KeyNotFound';
}

const keys: { rotating?: string; byok?: string; doomed?: string; hsmRotating?: string; suspended?: string } = {};
let rotatingRefused: unknown;
/** Ciphertexts made with each rotating key's first version, before the clock moved. */
const before: Record<string, { versionId: string; blob: string }> = {};
let moved: ClockShown;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kms-time-machine-'));
  const endpoint = await startManualQuickstart();
  const credentials = JSON.parse(await readFile(path.join(dataDir, 'credentials.json'), 'utf8')) as { AccessKeyId: string; AccessKeySecret: string };
  call = openApiClient(endpoint, { accessKeyId: credentials.AccessKeyId, accessKeySecret: credentials.AccessKeySecret });
  const softwareInstance = /SW instance\s+(kst-\w+)/.exec(output)?.[1];
  const hsmInstance = /HSM instance\s+(kst-\w+)/.exec(output)?.[1];
  if (!softwareInstance || !hsmInstance) throw new Error(`no instances in the banner:\n${output}`);

  const start = await clockCli('show');
  // A SOFTWARE key that rotates every 7 days.
  try {
    const created = await call('CreateKey', { DKMSInstanceId: softwareInstance, EnableAutomaticRotation: true, RotationInterval: '7d' });
    keys.rotating = created.KeyMetadata.KeyId as string;
  } catch (error) {
    rotatingRefused = error;
  }
  // Seed 002 on the HSM tier too, and a rotating key that is Disabled (suspended) over the due date.
  keys.hsmRotating = (await call('CreateKey', { DKMSInstanceId: hsmInstance, EnableAutomaticRotation: true, RotationInterval: '7d' })).KeyMetadata
    .KeyId as string;
  keys.suspended = (await call('CreateKey', { DKMSInstanceId: softwareInstance, EnableAutomaticRotation: true, RotationInterval: '7d' })).KeyMetadata
    .KeyId as string;
  await call('DisableKey', { KeyId: keys.suspended });
  for (const keyId of [keys.rotating, keys.hsmRotating]) {
    if (!keyId) continue;
    const encrypted = await call('Encrypt', { KeyId: keyId, Plaintext: `v1 of ${keyId}` });
    before[keyId] = { versionId: encrypted.KeyVersionId as string, blob: encrypted.CiphertextBlob as string };
  }
  // BYOK material that expires one day from the service's now.
  keys.byok = (await call('CreateKey', { DKMSInstanceId: softwareInstance, Origin: 'EXTERNAL' })).KeyMetadata.KeyId as string;
  const params = await call('GetParametersForImport', { KeyId: keys.byok, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
  await call('ImportKeyMaterial', {
    KeyId: keys.byok,
    EncryptedKeyMaterial: wrapKeyMaterial(Buffer.from(params.PublicKey, 'base64'), 'RSAES_OAEP_SHA_256', randomBytes(32)).toString('base64'),
    ImportToken: params.ImportToken,
    KeyMaterialExpireUnix: Math.floor(Date.parse(start.Now) / 1000) + DAY_S,
  });
  // A key deleted 7 days from now.
  keys.doomed = (await call('CreateKey', { DKMSInstanceId: softwareInstance })).KeyMetadata.KeyId as string;
  await call('ScheduleKeyDeletion', { KeyId: keys.doomed, PendingWindowInDays: 7 });

  moved = await clockCli('advance', '8d');
}, 180_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child?.once('exit', resolve));
    child.kill('SIGINT');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 20_000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

describe('KMS_CLOCK=manual npm run quickstart, moved by kms clock advance 8d', () => {
  it('says its clock is manual, and the CLI moved every process of it 8 days ahead', () => {
    expect(output).toMatch(/Clock\s+manual/);
    expect(moved.OffsetSeconds).toBe(8 * DAY_S);
    expect(moved.NotifiedProcesses).toBeGreaterThanOrEqual(1);
    // The delayed jobs of the three rotations, the deletion and the expiry were due: promoted.
    expect(moved.PromotedJobs).toEqual({ Rotation: 3, KeyDeletion: 1, MaterialExpiry: 1 });
  });

  it('the BYOK material due one day after the start has expired: the key is PendingImport', async () => {
    await eventually('material expiry', async () => (await call('DescribeKey', { KeyId: keys.byok })).KeyMetadata.KeyState === 'PendingImport');
  }, 90_000);

  it('the key scheduled for deletion in 7 days is gone (Forbidden.KeyNotFound)', async () => {
    await eventually('key deletion', () => isGone(keys.doomed));
  }, 90_000);

  const versionsOf = async (keyId: string | undefined) =>
    (await call('ListKeyVersions', { KeyId: keyId })).KeyVersions.KeyVersion as Array<{ KeyVersionId: string }>;

  it.each(['SOFTWARE', 'HSM'] as const)('seed 002, %s key with a 7-day rotation: one new version, primary; Encrypt names it; the v1 ciphertext decrypts', async (tier) => {
    expect(rotatingRefused, 'CreateKey with EnableAutomaticRotation=true, RotationInterval=7d on a SOFTWARE key').toBeUndefined();
    const keyId = tier === 'SOFTWARE' ? keys.rotating : keys.hsmRotating;
    await eventually(`${tier} rotation`, async () => (await versionsOf(keyId)).length === 2);
    const described = (await call('DescribeKey', { KeyId: keyId })).KeyMetadata;
    const v1 = before[keyId as string];
    expect(described.PrimaryKeyVersion).not.toBe(v1?.versionId);
    expect((await versionsOf(keyId)).map((v) => v.KeyVersionId)).toContain(described.PrimaryKeyVersion);
    // The schedule moved on by the interval, past the service's new now.
    expect(Date.parse(described.NextRotationDate) - Date.parse(described.LastRotationDate)).toBe(7 * DAY_S * 1000);
    expect(Date.parse(described.NextRotationDate)).toBeGreaterThan(Date.parse(moved.Now));
    expect((await call('Encrypt', { KeyId: keyId, Plaintext: 'v2' })).KeyVersionId).toBe(described.PrimaryKeyVersion);
    expect((await call('Decrypt', { CiphertextBlob: v1?.blob })).Plaintext).toBe(`v1 of ${keyId}`);
    // One rotation for one due date, not one per sweep or job: it stays at two.
    expect(await versionsOf(keyId)).toHaveLength(2);
  }, 90_000);

  it('a key Disabled over its due date does not rotate (Suspended); enabled again, it rotates once', async () => {
    // The sweep that the CLI queued runs its parts in turn (expiry, rotation, deletion): once
    // the deletion is seen, its rotation part has run and passed this key by.
    await eventually('the sweep', () => isGone(keys.doomed));
    expect(await versionsOf(keys.suspended)).toHaveLength(1);
    expect((await call('DescribeKey', { KeyId: keys.suspended })).KeyMetadata.AutomaticRotation).toBe('Suspended');
    await call('EnableKey', { KeyId: keys.suspended });
    await eventually('rotation at re-enable', async () => (await versionsOf(keys.suspended)).length === 2);
    expect((await call('DescribeKey', { KeyId: keys.suspended })).KeyMetadata.AutomaticRotation).toBe('Enabled');
  }, 90_000);

  it('operator verbs attached through runtime.json keep stdout JSON (the manual-clock warning goes to stderr), and kms hsm status finds the data dir token', async () => {
    const env = { ...withoutOuterSettings(process.env), KMS_DATA_DIR: dataDir };
    const kmsCli = (...args: string[]) => run(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), ...args], { cwd: repoRoot, env });
    const listed = await kmsCli('instance', 'list');
    expect((JSON.parse(listed.stdout) as Array<{ InstanceId: string }>).map((i) => i.InstanceId)).toHaveLength(2);
    expect(listed.stderr).toContain('KMS_CLOCK=manual');
    // No SOFTHSM2_CONF in the environment: the data dir's softhsm2.conf, as for every other verb.
    const status = JSON.parse((await kmsCli('hsm', 'status')).stdout) as { capabilities: Record<string, boolean> };
    expect(status.capabilities.aesGcm).toBe(true);
  }, 60_000);
});
