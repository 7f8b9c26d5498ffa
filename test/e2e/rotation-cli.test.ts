import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { byokWorkDir, decryptBlobWithMaterial, sh } from '../helpers/byok.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/** Rotation with the `kms` CLI: `key set-rotation`, `key rotate`, `import-material --new-material`. */
const repoRoot = path.resolve(import.meta.dirname, '../..');
/** Each CLI verb is a fresh Node process; a loaded 2-core machine runs a dozen of them slowly. */
const SLOW = { timeout: 240_000 };
let server: TestServer;
let call: CallApi;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
});

afterAll(async () => {
  await server?.stop();
});

/** Runs `kms …` as a user would, credentials from the environment; a non-zero exit throws. */
async function run(cwd: string, ...args: string[]): Promise<string> {
  const env = {
    ...process.env,
    KMS_ENDPOINT: `http://${server.endpoint}`,
    KMS_ACCESS_KEY_ID: server.admin.accessKeyId,
    KMS_ACCESS_KEY_SECRET: server.admin.accessKeySecret,
    KMS_DATA_DIR: cwd,
  };
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), ...args], { cwd, env });
  return stdout;
}

const kms = async (cwd: string, ...args: string[]): Promise<Record<string, any>> => JSON.parse(await run(cwd, ...args)) as Record<string, any>;

/** Seed 000 steps 2–4 with the CLI, into `keyId`, with `--new-material` when asked. */
async function importWithCli(dir: string, keyId: string, materialFile: string, newMaterial: boolean) {
  await kms(dir, 'import-params', keyId, '--algorithm', 'RSAES_OAEP_SHA_256', '--out', 'download');
  await run(dir, 'wrap-material', '--public-key', 'download/PublicKey.bin', '--algorithm', 'RSAES_OAEP_SHA_256', '--in', materialFile, '--out', 'wrapped.txt');
  return kms(dir, 'import-material', keyId, '--material-file', 'wrapped.txt', '--token-file', 'download/token.txt', ...(newMaterial ? ['--new-material'] : []));
}

describe('kms key set-rotation / key rotate / import-material --new-material', SLOW, () => {
  it('turns automatic rotation on and off, and rotates a generated key now', async () => {
    const dir = await byokWorkDir();
    const keyId = (await kms(dir, 'key', 'create', '--instance', server.softwareInstanceId)).KeyId as string;
    expect(await kms(dir, 'key', 'set-rotation', keyId, '--interval', '168h')).toMatchObject({ AutomaticRotation: 'Enabled', RotationInterval: '604800s' });
    const before = await kms(dir, 'key', 'describe', keyId);
    const rotated = await kms(dir, 'key', 'rotate', keyId);
    expect(rotated.PrimaryKeyVersion).not.toBe(before.PrimaryKeyVersion);
    expect(await kms(dir, 'key', 'versions', keyId)).toHaveLength(2);
    const off = await kms(dir, 'key', 'set-rotation', keyId, '--off');
    expect(off.AutomaticRotation).toBe('Disabled');
    expect(off).not.toHaveProperty('NextRotationDate');
  });

  it('rotates a SOFTWARE BYOK key to new material', async () => {
    const dir = await byokWorkDir();
    const keyId = (await kms(dir, 'key', 'create', '--origin', 'EXTERNAL', '--instance', server.softwareInstanceId)).KeyId as string;
    await sh(dir, 'openssl rand -out first.bin 32 && openssl rand -out second.bin 32');
    expect((await importWithCli(dir, keyId, 'first.bin', false)).KeyState).toBe('Enabled');
    const c1 = (await call('Encrypt', { KeyId: keyId, Plaintext: 'first' })).CiphertextBlob as string;

    await importWithCli(dir, keyId, 'second.bin', true);
    const versions = (await kms(dir, 'key', 'versions', keyId)) as unknown as Array<{ KeyVersionId: string; KeyVersionState: string }>;
    expect(versions.map((v) => v.KeyVersionState)).toEqual(['Enabled', 'PendingRotation']);
    const rotated = await kms(dir, 'key', 'rotate', keyId);
    expect(rotated.PrimaryKeyVersion).toBe(versions[1]!.KeyVersionId);

    const c2 = (await call('Encrypt', { KeyId: keyId, Plaintext: 'second' })).CiphertextBlob as string;
    expect(decryptBlobWithMaterial(c1, await readFile(path.join(dir, 'first.bin'))).plaintext).toBe('first');
    expect(decryptBlobWithMaterial(c2, await readFile(path.join(dir, 'second.bin'))).plaintext).toBe('second');
  });
});
