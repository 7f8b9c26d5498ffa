import { execFile } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { byokWorkDir, decryptBlobWithMaterial, sh } from '../helpers/byok.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * The seed's (000) four steps with the `kms` CLI: import-params (step 2), wrap-material or
 * openssl (step 3), import-material (step 4), and delete-material.
 */
const repoRoot = path.resolve(import.meta.dirname, '../..');
let server: TestServer;
let call: CallApi;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
});

afterAll(async () => {
  await server?.stop();
});

/** Runs `kms …` as a user would, credentials from the environment. */
async function kms(cwd: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    ...process.env,
    KMS_ENDPOINT: `http://${server.endpoint}`,
    KMS_ACCESS_KEY_ID: server.admin.accessKeyId,
    KMS_ACCESS_KEY_SECRET: server.admin.accessKeySecret,
    KMS_DATA_DIR: cwd,
  };
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), ...args], { cwd, env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('kms import-params / wrap-material / import-material / delete-material', () => {
  it('walks the seed’s four steps on a hardware key, then deletes and re-imports with openssl for step 3', async () => {
    const dir = await byokWorkDir();
    // Step 1.
    const created = await kms(dir, 'key', 'create', '--origin', 'EXTERNAL', '--instance', server.hsmInstanceId);
    expect(created.code, created.stderr).toBe(0);
    const keyId = (JSON.parse(created.stdout) as { KeyId: string }).KeyId;
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata).toMatchObject({ KeyState: 'PendingImport', Origin: 'EXTERNAL' });

    // Step 2.
    const params = await kms(dir, 'import-params', keyId, '--algorithm', 'RSAES_OAEP_SHA_256', '--out', 'download');
    expect(params.code, params.stderr).toBe(0);
    const printed = JSON.parse(params.stdout) as { KeyId: string; TokenExpireTime: string };
    expect(printed.KeyId).toBe(keyId);
    const der = await readFile(path.join(dir, 'download/PublicKey.bin'));
    const pem = await readFile(path.join(dir, 'download/PublicKey.pem'), 'utf8');
    expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(createPublicKey(pem).export({ type: 'spki', format: 'der' }).equals(der)).toBe(true);
    expect((await stat(path.join(dir, 'download/token.txt'))).mode & 0o777).toBe(0o600);

    // Step 3, with our CLI and the PEM download.
    await sh(dir, 'openssl rand -out KeyMaterial.bin 32');
    const wrapped = await kms(dir, 'wrap-material', '--public-key', 'download/PublicKey.pem', '--algorithm', 'RSAES_OAEP_SHA_256', '--in', 'KeyMaterial.bin', '--out', 'EncryptedKeyMaterial_base64.txt');
    expect(wrapped.code, wrapped.stderr).toBe(0);
    expect(await readFile(path.join(dir, 'EncryptedKeyMaterial_base64.txt'), 'utf8')).toMatch(/^[A-Za-z0-9+/]{342}==$/);

    // Step 4, with an expiry.
    const expireUnix = Math.floor(Date.now() / 1000) + 86_400;
    const imported = await kms(dir, 'import-material', keyId, '--material-file', 'EncryptedKeyMaterial_base64.txt', '--token-file', 'download/token.txt', '--expire-unix', String(expireUnix));
    expect(imported.code, imported.stderr).toBe(0);
    expect(JSON.parse(imported.stdout)).toEqual({ KeyId: keyId, KeyState: 'Enabled', MaterialExpireTime: new Date(expireUnix * 1000).toISOString().replace('.000Z', 'Z') });

    const material = await readFile(path.join(dir, 'KeyMaterial.bin'));
    const encrypted = await call('Encrypt', { KeyId: keyId, Plaintext: 'through the CLI' });
    expect(decryptBlobWithMaterial(encrypted.CiphertextBlob, material).plaintext).toBe('through the CLI');

    // Deletion, then the FAQ's re-import: a new download, step 3 with the seed's openssl (PKCS#1 v1.5 this time).
    const deleted = await kms(dir, 'delete-material', keyId);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(JSON.parse(deleted.stdout)).toEqual({ KeyId: keyId, KeyState: 'PendingImport', MaterialExpireTime: '' });
    expect((await kms(dir, 'import-params', keyId, '--algorithm', 'RSAES_PKCS1_V1_5', '--out', '.')).code).toBe(0);
    await sh(dir, 'openssl pkeyutl -encrypt -in KeyMaterial.bin -inkey PublicKey.bin -keyform DER -pubin -out EncryptedKeyMaterial.bin -pkeyopt rsa_padding_mode:pkcs1');
    await sh(dir, 'openssl enc -e -base64 -A -in EncryptedKeyMaterial.bin -out EncryptedKeyMaterial_base64.txt');
    const again = await kms(dir, 'import-material', keyId, '--material-file', 'EncryptedKeyMaterial_base64.txt', '--token-file', 'token.txt');
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ KeyState: 'Enabled', MaterialExpireTime: '' });
    expect((await call('Decrypt', { CiphertextBlob: encrypted.CiphertextBlob })).Plaintext).toBe('through the CLI');
  }, 120_000);

  it('reports a refusal as Code: Message and exits 1 (a token from another download)', async () => {
    const dir = await byokWorkDir();
    const keyId = (await call('CreateKey', { Origin: 'EXTERNAL', DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string;
    expect((await kms(dir, 'import-params', keyId, '--algorithm', 'RSAES_OAEP_SHA_256', '--out', 'a')).code).toBe(0);
    expect((await kms(dir, 'import-params', keyId, '--algorithm', 'RSAES_OAEP_SHA_256', '--out', 'b')).code).toBe(0);
    await writeFile(path.join(dir, 'KeyMaterial.bin'), Buffer.alloc(32, 7));
    expect((await kms(dir, 'wrap-material', '--public-key', 'a/PublicKey.bin', '--algorithm', 'RSAES_OAEP_SHA_256', '--in', 'KeyMaterial.bin', '--out', 'm.txt')).code).toBe(0);
    const refused = await kms(dir, 'import-material', keyId, '--material-file', 'm.txt', '--token-file', 'b/token.txt');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^InvalidKeyMaterial: key material is invalid\./);
    const sha1 = await kms(dir, 'import-params', keyId, '--algorithm', 'RSAES_OAEP_SHA_1', '--out', 'c');
    expect(sha1.code).toBe(1);
    expect(sha1.stderr).toContain('InvalidParameter');
  }, 120_000);

  it('works in byok/<key id>/ by default, says what it wrote, and step 4 finds both files there (even given an alias)', async () => {
    const dir = await byokWorkDir();
    const keyId = (await call('CreateKey', { Origin: 'EXTERNAL', DKMSInstanceId: server.hsmInstanceId })).KeyMetadata.KeyId as string;
    await call('CreateAlias', { AliasName: `alias/byok-folder-${keyId}`, KeyId: keyId });
    const folder = path.join('byok', keyId);

    const params = await kms(dir, 'import-params', keyId, '--algorithm', 'RSAES_OAEP_SHA_256');
    expect(params.code, params.stderr).toBe(0);
    expect((JSON.parse(params.stdout) as { Files: Record<string, string> }).Files).toEqual({
      PublicKeyDer: path.join(folder, 'PublicKey.bin'),
      PublicKeyPem: path.join(folder, 'PublicKey.pem'),
      ImportToken: path.join(folder, 'token.txt'),
    });
    expect(params.stderr).toContain(`wrote ${path.join(folder, 'PublicKey.bin')}, ${path.join(folder, 'PublicKey.pem')} and ${path.join(folder, 'token.txt')} (0600)`);
    expect((await stat(path.join(dir, folder, 'token.txt'))).mode & 0o777).toBe(0o600);

    const material = Buffer.alloc(32, 9);
    await writeFile(path.join(dir, 'KeyMaterial.bin'), material);
    const encryptedFile = path.join(folder, 'EncryptedKeyMaterial_base64.txt');
    const wrapped = await kms(dir, 'wrap-material', '--public-key', path.join(folder, 'PublicKey.bin'), '--algorithm', 'RSAES_OAEP_SHA_256', '--in', 'KeyMaterial.bin', '--out', encryptedFile);
    expect(wrapped.code, wrapped.stderr).toBe(0);
    expect(JSON.parse(wrapped.stdout)).toEqual({ WrappingAlgorithm: 'RSAES_OAEP_SHA_256', Files: { EncryptedKeyMaterial: encryptedFile } });

    const imported = await kms(dir, 'import-material', `alias/byok-folder-${keyId}`);
    expect(imported.code, imported.stderr).toBe(0);
    expect(JSON.parse(imported.stdout)).toMatchObject({ KeyId: keyId, KeyState: 'Enabled' });
    const encrypted = await call('Encrypt', { KeyId: keyId, Plaintext: 'from the byok folder' });
    expect(decryptBlobWithMaterial(encrypted.CiphertextBlob, material).plaintext).toBe('from the byok folder');

    const missing = await kms(dir, 'import-material', keyId, '--token-file', 'nowhere/token.txt');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('kms: no import token (step 2) at nowhere/token.txt');
  }, 120_000);
});
