import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { takeExclusiveLease } from '../../src/store/deployment-lease.js';
import { createTestDatabase } from '../helpers/database.js';
import { type KmsProcess, createEmptyDatabase, deploymentEnv, kmsCommand, startKms } from '../helpers/kms-process.js';
import { openApiClient, sdkError } from '../helpers/sdk.js';

/**
 * Issue 19, backup and restore: a deployment (its own data dir, token, PIN files, database) with
 * keys on both tiers and both storage mechanisms is backed up with `kms backup`, changed, then
 * restored with `kms restore` into a new database and a new data dir; a `kms serve` there
 * decrypts every ciphertext made before the backup. A restore over the running deployment is refused.
 */
const admin = { accessKeyId: 'LTAIBACKUPTEST0000000001', accessKeySecret: 'backup-test-secret-0123456789' };
const started: KmsProcess[] = [];
const dirs: string[] = [];

afterAll(async () => {
  for (const p of started) await p.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

const mode = async (file: string) => (await stat(file)).mode & 0o777;

describe('kms backup / kms restore', () => {
  it('a restored deployment decrypts every ciphertext made before the backup; restore over a running one is refused', async () => {
    const dataDir = await tempDir('kms-backup-a-');
    const env = deploymentEnv({
      KMS_DATA_DIR: dataDir,
      DATABASE_URL: await createTestDatabase(),
      KMS_HSM_TOKEN_LABEL: 'backup-test',
      KMS_QUEUE_PREFIX: `test-${randomUUID()}`,
      KMS_BOOTSTRAP_ACCESS_KEY_ID: admin.accessKeyId,
      KMS_BOOTSTRAP_ACCESS_KEY_SECRET: admin.accessKeySecret,
    });
    await kmsCommand(env, 'hsm', 'init');
    const instance = async (...flags: string[]) =>
      (JSON.parse((await kmsCommand(env, 'instance', 'create', '--key-quota', '20', '--qps', '1000', ...flags)).stdout) as { InstanceId: string }).InstanceId;
    const instances = {
      software: await instance('--type', 'SOFTWARE'),
      hsmInternal: await instance('--type', 'HSM'),
      hsmEncryptedDatabase: await instance('--type', 'HSM', '--key-storage-mechanism', 'HsmEncryptedDatabase'),
    };
    const serverA = await startKms('serve', env);
    started.push(serverA);
    const callA = openApiClient(serverA.endpoint, admin);

    // Per instance: a key with two versions, a ciphertext under each.
    const made: Array<{ keyId: string; blob: string; plaintext: string }> = [];
    const keys: Record<string, string> = {};
    for (const [name, id] of Object.entries(instances)) {
      const keyId = (await callA('CreateKey', { DKMSInstanceId: id })).KeyMetadata.KeyId as string;
      keys[name] = keyId;
      for (const version of ['v1', 'v2']) {
        if (version === 'v2') await callA('CreateKeyVersion', { KeyId: keyId });
        const plaintext = `${name} ${version} before the backup`;
        made.push({ keyId, plaintext, blob: (await callA('Encrypt', { KeyId: keyId, Plaintext: plaintext })).CiphertextBlob as string });
      }
    }

    const backup = path.join(await tempDir('kms-backup-out-'), 'b1');
    let startedAt = Date.now();
    const backedUp = await kmsCommand(env, 'backup', '--out', backup);
    const backupMs = Date.now() - startedAt;
    expect(backedUp.stdout).toMatch(/database dump, token directory, \d secret file\(s\); migration level \d{3}_/);
    const manifest = JSON.parse(await readFile(path.join(backup, 'manifest.json'), 'utf8')) as Record<string, any>;
    expect(manifest).toMatchObject({ format: 'hsm-kms-backup/1', database: { kind: 'postgres', file: 'database.dump' }, token: { dir: 'token', tokenLabel: 'backup-test' }, pinsFromEnvironment: [] });
    expect(manifest.secrets).toEqual(expect.arrayContaining(['hsm/user.pin', 'hsm/so.pin', 'credentials.json']));
    expect(manifest.migrationLevel).toBe(manifest.migrations.at(-1));
    expect(Object.keys(manifest.files)).toEqual(expect.arrayContaining(['database.dump', 'secrets/hsm/user.pin']));
    expect(await mode(backup)).toBe(0o700);
    for (const file of ['manifest.json', 'database.dump', 'secrets/hsm/user.pin', 'secrets/hsm/so.pin']) expect(await mode(path.join(backup, file))).toBe(0o600);

    // Changes after the backup: a new key, a disabled key, a key scheduled for deletion.
    const afterBackup = (await callA('CreateKey', { DKMSInstanceId: instances.hsmInternal })).KeyMetadata.KeyId as string;
    await callA('DisableKey', { KeyId: keys.software });
    await callA('ScheduleKeyDeletion', { KeyId: keys.hsmEncryptedDatabase, PendingWindowInDays: 7 });

    // Over the running deployment: refused, and nothing written.
    const overRunning = deploymentEnv({ ...stripKeys(env), KMS_DATA_DIR: await tempDir('kms-backup-refused-') });
    const refused = await kmsCommand(overRunning, 'restore', '--from', backup).catch((e: { code: number; stderr: string }) => e);
    expect(refused).toMatchObject({ code: 1 });
    expect((refused as { stderr: string }).stderr).toMatch(/refused: the deployment is running on this database \(hsm-kms serve pid \d+/);
    await expect(stat(path.join(overRunning.KMS_DATA_DIR!, 'hsm'))).rejects.toThrow();

    // The deployment is lost: server stopped, data dir (token, PINs) gone.
    await serverA.stop();
    await rm(dataDir, { recursive: true, force: true });

    // Into a database that already holds a schema: refused without --replace.
    const restoredDir = await tempDir('kms-backup-b-');
    const envB = deploymentEnv({ ...stripKeys(env), KMS_DATA_DIR: restoredDir, DATABASE_URL: await createTestDatabase(), KMS_QUEUE_PREFIX: `test-${randomUUID()}` });
    const notEmpty = await kmsCommand(envB, 'restore', '--from', backup).catch((e: { code: number; stderr: string }) => e);
    expect((notEmpty as { stderr: string }).stderr).toContain('already holds an hsm-kms schema');

    envB.DATABASE_URL = await createEmptyDatabase();
    startedAt = Date.now();
    const restored = await kmsCommand(envB, 'restore', '--from', backup);
    const restoreMs = Date.now() - startedAt;
    const size = Object.keys(manifest.files).length;
    console.log(`backup: ${backupMs} ms, restore: ${restoreMs} ms (${size} files, ${made.length} ciphertexts; both through the CLI, process start included)`);
    expect(restored.stdout).toContain('restored the backup of');
    expect(await mode(path.join(restoredDir, 'hsm', 'user.pin'))).toBe(0o600);
    // While a restore holds the database (its exclusive lease), no node starts on it.
    const restoring = new pg.Client({ connectionString: envB.DATABASE_URL });
    await restoring.connect();
    expect(await takeExclusiveLease(restoring)).toEqual({ taken: true });
    await expect(startKms('serve', envB)).rejects.toThrow(/a `kms restore` is running on this database/);
    await restoring.end();
    const serverB = await startKms('serve', envB);
    started.push(serverB);
    const callB = openApiClient(serverB.endpoint, admin);
    for (const { blob, plaintext, keyId } of made) {
      const answer = await callB('Decrypt', { CiphertextBlob: blob });
      expect({ keyId, plaintext: answer.Plaintext }).toEqual({ keyId, plaintext });
    }
    // The state of the backup, not of later: the key made after it does not exist; the others are as they were.
    expect((await sdkError(() => callB('DescribeKey', { KeyId: afterBackup }))).code).toBe('Forbidden.KeyNotFound');
    expect((await callB('DescribeKey', { KeyId: keys.software })).KeyMetadata.KeyState).toBe('Enabled');
    expect((await callB('DescribeKey', { KeyId: keys.hsmEncryptedDatabase })).KeyMetadata.KeyState).toBe('Enabled');
    // And it works on: new ciphertexts under every restored key.
    for (const keyId of Object.values(keys)) {
      const blob = (await callB('Encrypt', { KeyId: keyId, Plaintext: 'after the restore' })).CiphertextBlob as string;
      expect((await callB('Decrypt', { CiphertextBlob: blob })).Plaintext).toBe('after the restore');
    }
    await serverB.stop();

    // A damaged backup is refused before anything is written.
    await writeFile(path.join(backup, 'secrets', 'credentials.json'), '{}');
    const envC = deploymentEnv({ ...stripKeys(env), KMS_DATA_DIR: await tempDir('kms-backup-c-'), DATABASE_URL: await createEmptyDatabase() });
    const damaged = await kmsCommand(envC, 'restore', '--from', backup).catch((e: { code: number; stderr: string }) => e);
    expect((damaged as { stderr: string }).stderr).toContain('secrets/credentials.json does not match its checksum');
  });
});

/** The env without the variables deploymentEnv recomputes. */
function stripKeys(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && k.startsWith('KMS_') || k === 'DATABASE_URL') out[k] = env[k]!;
  return out;
}
