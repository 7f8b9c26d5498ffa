import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../helpers/database.js';
import { waitFor } from '../helpers/jobs.js';
import { openApiClient } from '../helpers/sdk.js';

/**
 * Issue 18 point 8: scripts/docker-entrypoint.sh, run outside a container with the image's
 * settings (KMS_HOST=0.0.0.0, a data dir of its own, a real Postgres database and Redis): it
 * provisions the token, migrates, creates hsm-default and software-default, applies
 * KMS_SEED_FILE, says where the credentials are, and execs `kms serve`, whose credentials file
 * names the endpoint a client on the host uses (127.0.0.1, not 0.0.0.0).
 */
const repoRoot = path.resolve(import.meta.dirname, '../..');
let child: ChildProcess | undefined;
let dataDir: string | undefined;

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child!.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('scripts/docker-entrypoint.sh', () => {
  it('prepares token, schema, default instances and the seed, then serves, printing where the credentials are', async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'kms-entrypoint-'));
    const suffix = randomBytes(6).toString('hex');
    const seedKeyId = `key-entry${suffix}`;
    const seedFile = path.join(dataDir, 'seed.json');
    await writeFile(seedFile, JSON.stringify({ keys: [{ id: seedKeyId, tier: 'SOFTWARE', instance: 'software-default', aliases: [`alias/entrypoint-${suffix}`] }] }));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      KMS_DATA_DIR: dataDir,
      KMS_HOST: '0.0.0.0',
      KMS_PORT: '0',
      DATABASE_URL: await createTestDatabase(),
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      KMS_QUEUE_PREFIX: `test-${randomUUID()}`,
      KMS_LOG_LEVEL: 'warn',
      KMS_SEED_FILE: seedFile,
    };
    for (const name of ['SOFTHSM2_CONF', 'KMS_HSM_PIN', 'KMS_HSM_SO_PIN', 'KMS_BOOTSTRAP_ACCESS_KEY_ID', 'KMS_BOOTSTRAP_ACCESS_KEY_SECRET']) delete env[name];
    child = spawn('sh', ['scripts/docker-entrypoint.sh', 'node', 'bin/kms.mjs', 'serve'], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));

    const credentialsFile = path.join(dataDir, 'credentials.json');
    let credentials: { AccessKeyId: string; AccessKeySecret: string; Endpoint: string } | undefined;
    await waitFor(
      'the served credentials file',
      async () => {
        if (child?.exitCode !== null) throw new Error(`the entrypoint exited (${child?.exitCode}):\n${output}`);
        credentials = await readFile(credentialsFile, 'utf8').then((text) => JSON.parse(text) as typeof credentials, () => undefined);
        return credentials !== undefined;
      },
      150_000,
      200,
    );
    if (!credentials) throw new Error('unreachable');

    expect(output).toMatch(/^entrypoint: HSM token ready under /m);
    expect(output).toMatch(/^entrypoint: database schema current$/m);
    expect(output).toMatch(/^entrypoint: instances: \{"HsmInstanceId":"kst-\w+","SoftwareInstanceId":"kst-\w+"\}$/m);
    expect(output).toContain(`entrypoint: credentials (AccessKeyId, AccessKeySecret, Endpoint) go to ${credentialsFile}`);
    expect(output).toContain(`applying the seed file ${seedFile}`);
    // The server listens on 0.0.0.0; a client on this host is told 127.0.0.1.
    expect(credentials.Endpoint).toMatch(/^127\.0\.0\.1:\d+$/);

    const call = openApiClient(credentials.Endpoint, { accessKeyId: credentials.AccessKeyId, accessKeySecret: credentials.AccessKeySecret });
    const ids = (await call('ListKmsInstances', {})).KmsInstances.KmsInstance as Array<{ KmsInstanceId: string }>;
    const instances = await Promise.all(ids.map(async ({ KmsInstanceId }) => (await call('GetKmsInstance', { KmsInstanceId })).KmsInstance as Record<string, string>));
    expect(instances.map((i) => `${i.InstanceType} ${i.InstanceName}`).sort()).toEqual(['HSM hsm-default', 'SOFTWARE software-default']);
    const seeded = (await call('DescribeKey', { KeyId: `alias/entrypoint-${suffix}` })).KeyMetadata as Record<string, string>;
    expect(seeded).toMatchObject({ KeyId: seedKeyId, KeyState: 'Enabled', DKMSInstanceId: instances.find((i) => i.InstanceType === 'SOFTWARE')?.InstanceId });
    const health = await fetch(`http://${credentials.Endpoint}/health`);
    expect(health.status).toBe(200);
  }, 240_000);
});
