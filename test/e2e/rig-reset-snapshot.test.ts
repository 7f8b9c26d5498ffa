import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pkcs11js from 'pkcs11js';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireModule, findTokenSlot, login, releaseModule } from '../../src/hsm/pkcs11/module.js';
import { findObjects } from '../../src/hsm/pkcs11/object-inventory.js';
import { type TestKms, startTestKms } from '../../src/testing/index.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';

/**
 * Issue 18: `kms reset` empties a running rig and leaves no token object of a deleted key
 * (checked here through PKCS#11, outside the service); `kms snapshot save/restore` brings a
 * stopped rig back to a saved state, token and database together, and refuses while it runs.
 */
const repoRoot = path.resolve(import.meta.dirname, '../..');
let dataDir: string;
let rig: TestKms | undefined;
let call: CallApi;

const suffix = randomBytes(5).toString('hex');
const ids = { hsmAes: `key-righsm${suffix}`, hsmEc: `key-rigec${suffix}`, byok: `key-rigbyok${suffix}`, software: `key-rigsw${suffix}` };
const seed = {
  keys: [
    { id: ids.hsmAes, tier: 'HSM', aliases: [`alias/rig-${suffix}`], tags: { rig: 'yes' } },
    { id: ids.hsmEc, tier: 'HSM', spec: 'EC_P256' },
    { id: ids.byok, tier: 'HSM', origin: 'EXTERNAL', material: { base64: randomBytes(32).toString('base64') } },
    { id: ids.software, tier: 'SOFTWARE' },
  ],
};

function kms(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, KMS_DATA_DIR: dataDir };
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'SOFTHSM2_CONF', 'KMS_QUEUE_PREFIX']) delete env[name];
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), ...args], { cwd: repoRoot, env, timeout: 120_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function start(): Promise<void> {
  // A private redis-server (redisUrl ''), so the snapshot holds the rig's Redis too.
  rig = await startTestKms({ dataDir, redisUrl: '' });
  call = openApiClient(rig.endpoint, { accessKeyId: rig.accessKeyId, accessKeySecret: rig.accessKeySecret });
}

async function stop(): Promise<void> {
  await rig?.stop();
  rig = undefined;
}

/** Objects of the rig's token whose CKA_ID is one of `objectIds` (any class), seen through a PKCS#11 session of this process. */
async function tokenObjects(objectIds: readonly string[]): Promise<number> {
  process.env.SOFTHSM2_CONF = path.join(dataDir, 'hsm', 'softhsm2.conf');
  const modulePath = '/usr/lib/softhsm/libsofthsm2.so';
  const p11 = acquireModule(modulePath);
  try {
    const session = p11.C_OpenSession(findTokenSlot(p11, 'hsm-kms'), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      login(p11, session, (await readFile(path.join(dataDir, 'hsm', 'user.pin'), 'utf8')).trim());
      return objectIds.flatMap((id) => findObjects(p11, session, [{ type: pkcs11js.CKA_ID, value: Buffer.from(id, 'utf8') }])).length;
    } finally {
      p11.C_CloseSession(session);
    }
  } finally {
    releaseModule(modulePath);
  }
}

async function rows(sql: string): Promise<number> {
  const runtime = JSON.parse(await readFile(path.join(dataDir, 'runtime.json'), 'utf8')) as { databaseUrl: string };
  const client = new pg.Client({ connectionString: runtime.databaseUrl });
  await client.connect();
  try {
    return Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM (${sql}) q`)).rows[0]?.n);
  } finally {
    await client.end();
  }
}

const versionOf = async (keyId: string) => (await call('DescribeKey', { KeyId: keyId })).KeyMetadata.PrimaryKeyVersion as string;
const errorCode = async (p: Promise<unknown>) => (await sdkError(() => p)).code;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kms-rig-'));
});

afterAll(async () => {
  await stop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('kms reset', () => {
  it('seeds through the CLI (again: unchanged), then reset leaves no key, row or token object', async () => {
    await start();
    const seedFile = path.join(dataDir, 'rig.yaml');
    await writeFile(seedFile, stringify(seed));
    const first = await kms(['seed', seedFile]);
    expect(first.stderr).toBe('');
    expect(first.code, first.stdout).toBe(0);
    expect(first.stdout).toMatch(/seed: 5 created/);
    const again = await kms(['seed', seedFile]);
    expect(again.stdout).toMatch(/seed: 5 unchanged\n$/);

    const hsmVersions = [await versionOf(ids.hsmAes), await versionOf(ids.hsmEc), await versionOf(ids.byok)];
    expect(await tokenObjects(hsmVersions)).toBeGreaterThanOrEqual(3);
    expect(await rows('SELECT 1 FROM audit_events')).toBeGreaterThan(0);

    const reset = await kms(['reset']);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout).toMatch(/reset: 4 keys, 4 versions/);
    expect(await tokenObjects(hsmVersions)).toBe(0);
    // Before the refused calls below, which are audited themselves (batched, a moment later).
    expect(await rows('SELECT 1 FROM audit_events')).toBe(0);
    for (const keyId of Object.values(ids)) expect(await errorCode(call('DescribeKey', { KeyId: keyId }))).toBe('Forbidden.KeyNotFound');
    expect(await errorCode(call('DescribeKey', { KeyId: `alias/rig-${suffix}` }))).toBe('Forbidden.AliasNotFound');
    expect(await rows('SELECT 1 FROM keys UNION ALL SELECT 1 FROM key_versions UNION ALL SELECT 1 FROM aliases UNION ALL SELECT 1 FROM key_tags')).toBe(0);
    // Instances and access keys stay (without --all): the rig is usable at once.
    expect(await rows('SELECT 1 FROM instances')).toBe(2);
    expect((await call('CreateKey', {})).KeyMetadata.KeyState).toBe('Enabled');
    // A rig start and a dozen CLI runs: minutes on a loaded 2-core machine.
  }, 300_000);
});

describe('kms snapshot', () => {
  it('refuses while the rig runs; save → change → restore gives back the saved state', async () => {
    if (!rig) await start();
    const refused = await kms(['snapshot', 'save', 'one']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/is running \(process \d+\)/);

    // The saved state: the seeded keys, and a ciphertext of the SOFTWARE key.
    await kms(['reset']);
    const seedFile = path.join(dataDir, 'rig.yaml');
    expect((await kms(['seed', seedFile])).code).toBe(0);
    const { CiphertextBlob } = await call('Encrypt', { KeyId: ids.software, Plaintext: 'state one' });
    const savedKeys = (await call('ListKeys', { PageSize: 100 })).TotalCount as number;
    await stop();
    const saved = await kms(['snapshot', 'save', 'one']);
    expect(saved.code, saved.stderr).toBe(0);

    // A change: a new HSM key, an alias gone.
    await start();
    const instanceId = rig!.hsmInstanceId;
    const added = (await call('CreateKey', { DKMSInstanceId: instanceId })).KeyMetadata.KeyId as string;
    const addedVersion = await versionOf(added);
    await call('DeleteAlias', { AliasName: `alias/rig-${suffix}` });
    expect(await tokenObjects([addedVersion])).toBe(1);
    await stop();

    const restored = await kms(['snapshot', 'restore', 'one']);
    expect(restored.code, restored.stderr).toBe(0);
    await start();
    expect(await errorCode(call('DescribeKey', { KeyId: added }))).toBe('Forbidden.KeyNotFound');
    expect(await tokenObjects([addedVersion])).toBe(0);
    expect((await call('DescribeKey', { KeyId: `alias/rig-${suffix}` })).KeyMetadata.KeyId).toBe(ids.hsmAes);
    expect((await call('ListKeys', { PageSize: 100 })).TotalCount).toBe(savedKeys);
    expect((await call('Decrypt', { CiphertextBlob })).Plaintext).toBe('state one');
    expect((await kms(['snapshot', 'list'])).stdout).toMatch(/^one {2}\d{4}-/m);
    await stop();

    // Nothing of the rig runs any more.
    for (const pid of await readdir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      expect(cwd.startsWith(dataDir) || cmdline.includes(dataDir), `process ${pid} ${cmdline}`).toBe(false);
    }
    // Three rig starts and a dozen CLI runs.
  }, 480_000);
});
