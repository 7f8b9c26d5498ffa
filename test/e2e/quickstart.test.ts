import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KMS, legacyClient } from '../helpers/sdk.js';

/**
 * `kms quickstart` as a user runs it: a new data dir, no DATABASE_URL (embedded PGlite), no
 * REDIS_URL (private redis-server), serving on an ephemeral port; then Ctrl-C, a second run on
 * the same state, and an old ciphertext still decrypts.
 */
const repoRoot = path.resolve(import.meta.dirname, '../..');
const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});

function startQuickstart(dataDir: string): Promise<{ child: ChildProcess; endpoint: string; output: () => string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, KMS_DATA_DIR: dataDir, KMS_PORT: '0', KMS_LOG_LEVEL: 'warn' };
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'SOFTHSM2_CONF', 'KMS_HSM_PIN', 'KMS_HSM_SO_PIN']) delete env[name];
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), 'quickstart'], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`quickstart did not start in time:\n${output}`)), 90_000);
    const check = () => {
      const match = /Endpoint\s+(127\.0\.0\.1:\d+)/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve({ child, endpoint: match[1], output: () => output });
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`quickstart exited (${code}):\n${output}`));
    });
  });
}

function stop(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.kill('SIGINT');
  });
}

describe('npm run quickstart', () => {
  it('serves from an empty data dir, stops on Ctrl-C, and a second run reuses the state', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-quickstart-'));
    const first = await startQuickstart(dataDir);
    const credentialsFile = path.join(dataDir, 'credentials.json');
    expect((await stat(credentialsFile)).mode & 0o777).toBe(0o600);
    const credentials = JSON.parse(await readFile(credentialsFile, 'utf8')) as { AccessKeyId: string; AccessKeySecret: string; Endpoint: string };
    expect(credentials.Endpoint).toBe(first.endpoint);
    expect(first.output()).toContain('HSM instance');

    const client = legacyClient(first.endpoint, { accessKeyId: credentials.AccessKeyId, accessKeySecret: credentials.AccessKeySecret });
    const created = await client.createKey(new KMS.CreateKeyRequest({}));
    const encrypted = await client.encrypt(new KMS.EncryptRequest({ keyId: created.keyMetadata.keyId, plaintext: 'survives restarts' }));
    expect(await stop(first.child)).toBe(0);

    const second = await startQuickstart(dataDir);
    const again = JSON.parse(await readFile(credentialsFile, 'utf8')) as { AccessKeyId: string; AccessKeySecret: string };
    expect(again.AccessKeyId).toBe(credentials.AccessKeyId);
    const client2 = legacyClient(second.endpoint, { accessKeyId: again.AccessKeyId, accessKeySecret: again.AccessKeySecret });
    const decrypted = await client2.decrypt(new KMS.DecryptRequest({ ciphertextBlob: encrypted.ciphertextBlob }));
    expect(decrypted.plaintext).toBe('survives restarts');
    // The same instances are reused, not created again.
    expect(second.output().match(/HSM instance\s+(kst-\w+)/)?.[1]).toBe(first.output().match(/HSM instance\s+(kst-\w+)/)?.[1]);
    expect(await stop(second.child)).toBe(0);
  }, 180_000);
});
