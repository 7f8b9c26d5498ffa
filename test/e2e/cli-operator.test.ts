import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/jobs.js';
import { openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');

/** The operator verbs of the `kms` command, run as a user would, against a running server's store and token. */
let server: TestServer;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  server = await startServer();
  env = {
    ...process.env,
    DATABASE_URL: server.databaseUrl,
    KMS_DATA_DIR: server.token.dataDir,
    KMS_HSM_TOKEN_LABEL: server.token.label,
    KMS_HSM_PIN: server.token.userPin,
    KMS_HSM_SO_PIN: server.token.soPin,
    SOFTHSM2_CONF: server.token.confPath,
    // The server's deployment: its Redis queue prefix carries the cache invalidation channel too.
    REDIS_URL: server.config.redisUrl ?? 'redis://127.0.0.1:6379',
    KMS_QUEUE_PREFIX: server.config.jobs.queuePrefix,
  };
});

afterAll(async () => {
  await server?.stop();
});

async function kms(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), ...args], { cwd: repoRoot, env });
}

describe('kms instance', () => {
  it('create prints the new instance as JSON with a kst- id, and list/describe/update see it', async () => {
    const { stdout } = await kms('instance', 'create', '--type', 'HSM', '--key-quota', '3', '--qps', '50');
    const created = JSON.parse(stdout) as { InstanceId: string; KeyNum: number; Spec: number; InstanceType: string };
    expect(created.InstanceId).toMatch(/^kst-[a-z0-9]+$/);
    expect(created).toMatchObject({ KeyNum: 3, Spec: 50, InstanceType: 'HSM' });

    const listed = JSON.parse((await kms('instance', 'list')).stdout) as Array<{ InstanceId: string }>;
    expect(listed.map((i) => i.InstanceId)).toContain(created.InstanceId);

    const updated = JSON.parse((await kms('instance', 'update', created.InstanceId, '--key-quota', '5')).stdout) as { KeyNum: number };
    expect(updated.KeyNum).toBe(5);
    // A single record is a Field/Value table, not one 27-column row.
    const table = (await kms('instance', 'describe', created.InstanceId, '--table')).stdout.trimEnd().split('\n');
    expect(table[0]).toMatch(/^Field\s+Value$/);
    expect(table).toContainEqual(expect.stringMatching(new RegExp(`^InstanceId\\s+${created.InstanceId}$`)));
    expect(table).toContainEqual(expect.stringMatching(/^InstanceType\s+HSM$/));
    expect(table).toContainEqual(expect.stringMatching(/^KeyNum\s+5$/));

    // The API sees what the CLI made.
    const call = openApiClient(server.endpoint, server.admin);
    expect((await call('GetKmsInstance', { KmsInstanceId: created.InstanceId })).KmsInstance.KeyNum).toBe(5);
  });

  it('refuses a bad --type with a message and exit code 1', async () => {
    const failure = await kms('instance', 'create', '--type', 'CLOUD', '--key-quota', '1', '--qps', '1').catch((e: { code: number; stderr: string }) => e);
    expect(failure).toMatchObject({ code: 1 });
    expect((failure as { stderr: string }).stderr).toContain('--type must be HSM or SOFTWARE');
  });

  it('--key-storage-mechanism HsmEncryptedDatabase makes an instance whose keys are wrapped; a bad mechanism is refused', async () => {
    const { stdout } = await kms('instance', 'create', '--type', 'HSM', '--key-quota', '3', '--qps', '50', '--key-storage-mechanism', 'HsmEncryptedDatabase');
    const created = JSON.parse(stdout) as { InstanceId: string; KeyStorageMechanism: string };
    expect(created.KeyStorageMechanism).toBe('HsmEncryptedDatabase');
    const call = openApiClient(server.endpoint, server.admin);
    const key = (await call('CreateKey', { DKMSInstanceId: created.InstanceId })).KeyMetadata as { KeyId: string; PrimaryKeyVersion: string };
    const { rows } = await server.kms.deps.db.query<{ storage: string }>('SELECT storage FROM key_versions WHERE id = $1', [key.PrimaryKeyVersion]);
    expect(rows[0]?.storage).toBe('wrapped');
    const blob = (await call('Encrypt', { KeyId: key.KeyId, Plaintext: 'via the CLI instance' })).CiphertextBlob as string;
    expect((await call('Decrypt', { CiphertextBlob: blob })).Plaintext).toBe('via the CLI instance');

    const failure = await kms('instance', 'create', '--type', 'HSM', '--key-quota', '1', '--qps', '1', '--key-storage-mechanism', 'Cloud').catch((e: { code: number; stderr: string }) => e);
    expect(failure).toMatchObject({ code: 1 });
    expect((failure as { stderr: string }).stderr).toContain('--key-storage-mechanism must be HsmInternal or HsmEncryptedDatabase');
  });
});

describe('kms access-key', () => {
  it('creates a key-user limited to one instance whose secret works once printed, and disable stops it', async () => {
    const { stdout } = await kms('access-key', 'create', '--role', 'key-user', '--instances', server.softwareInstanceId);
    const created = JSON.parse(stdout) as { AccessKeyId: string; AccessKeySecret: string; Role: string };
    expect(created.Role).toBe('key-user');
    const asUser = openApiClient(server.endpoint, { accessKeyId: created.AccessKeyId, accessKeySecret: created.AccessKeySecret });
    const admin = openApiClient(server.endpoint, server.admin);
    const swKey = await admin('CreateKey', { DKMSInstanceId: server.softwareInstanceId });
    const hsmKey = await admin('CreateKey', { DKMSInstanceId: server.hsmInstanceId });
    expect((await asUser('Encrypt', { KeyId: swKey.KeyMetadata.KeyId, Plaintext: 'ok' })).CiphertextBlob).toBeTruthy();
    expect((await sdkError(() => asUser('Encrypt', { KeyId: hsmKey.KeyMetadata.KeyId, Plaintext: 'no' }))).code).toBe('Forbidden.KeyNotFound');
    expect((await sdkError(() => asUser('CreateKey', {}))).statusCode).toBe(403);

    // The stored secret is sealed, never the clear text.
    const { rows } = await server.kms.deps.db.query<{ sealed_secret: Buffer }>('SELECT sealed_secret FROM access_keys WHERE id = $1', [created.AccessKeyId]);
    expect(rows[0]?.sealed_secret.toString('latin1')).not.toContain(created.AccessKeySecret);

    await kms('access-key', 'disable', created.AccessKeyId);
    // The CLI process published the change (issue 16): this server drops its cached key within a second.
    const refused = () =>
      asUser('DescribeKey', { KeyId: swKey.KeyMetadata.KeyId }).then(
        () => false,
        async (error: unknown) => (await sdkError(() => Promise.reject(error))).code === 'Forbidden.AccessKey',
      );
    await waitFor('the disabled key to be refused', refused, 1_000, 20);
  });
});

describe('kms instance ensure-defaults', () => {
  it('creates hsm-default and software-default only where no instance of the type exists', async () => {
    // The test server made an HSM and a SOFTWARE instance already: nothing to create.
    const ensured = JSON.parse((await kms('instance', 'ensure-defaults')).stdout) as { HsmInstanceId: string; SoftwareInstanceId: string };
    const listed = JSON.parse((await kms('instance', 'list')).stdout) as Array<{ InstanceId: string; Type: string; Name: string }>;
    expect(listed.find((i) => i.InstanceId === ensured.HsmInstanceId)?.Type).toBe('HSM');
    expect(listed.find((i) => i.InstanceId === ensured.SoftwareInstanceId)?.Type).toBe('SOFTWARE');
    expect(listed.filter((i) => i.Name === 'hsm-default' || i.Name === 'software-default')).toEqual([]);
  });
});

describe('kms migrate and kms hsm init', () => {
  it('hsm status opens the token hsm init provisioned, with the same SOFTHSM2_CONF default (the data dir)', async () => {
    const withoutConf = { ...env };
    delete withoutConf.SOFTHSM2_CONF;
    const { stdout } = await run(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), 'hsm', 'status'], { cwd: repoRoot, env: withoutConf });
    const status = JSON.parse(stdout) as { tokenLabel: string; softhsm2Conf: string; capabilities: Record<string, boolean> };
    expect(status.tokenLabel).toBe(server.token.label);
    expect(status.softhsm2Conf).toBe(path.join(server.token.dataDir, 'hsm', 'softhsm2.conf'));
    expect(status.capabilities.aesGcm).toBe(true);
  });

  it('are idempotent: nothing to apply, token already there', async () => {
    expect(JSON.parse((await kms('migrate')).stdout)).toEqual({ applied: [] });
    const init = JSON.parse((await kms('hsm', 'init')).stdout) as { created: boolean; capabilities: Record<string, boolean> };
    expect(init.created).toBe(false);
    expect(init.capabilities.aesGcm).toBe(true);
  });
});
