import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../helpers/database.js';
import { openApiClient } from '../helpers/sdk.js';

/**
 * Issue 18 points 3 and 4: `kms quickstart --port/--host/--data-dir` (flags win over the
 * environment), a timed line per step, instances that say what they are (hsm-default,
 * software-default, picked by GetKmsInstance's type), the banner's example file run as pasted in
 * another folder, and pinned bootstrap credentials (KMS_BOOTSTRAP_ACCESS_KEY_*), refused when
 * the secret is short or differs from the stored key's. DATABASE_URL and REDIS_URL are set, so
 * no embedded store starts (quickstart.test.ts covers those).
 */
const repoRoot = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(repoRoot, 'bin/kms.mjs');
const run = promisify(execFile);
const children: ChildProcess[] = [];
const scratch: string[] = [];

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

function baseEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, KMS_LOG_LEVEL: 'warn', REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', ...extra };
  for (const name of ['SOFTHSM2_CONF', 'KMS_HSM_PIN', 'KMS_HSM_SO_PIN', 'KMS_SEED_FILE']) delete env[name];
  return env;
}

interface Started {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
}

/** Starts `kms quickstart ARGS`; resolves once the banner is out, rejects if it exits first. */
function startQuickstart(args: string[], env: NodeJS.ProcessEnv): Promise<Started> {
  const child = spawn(process.execPath, [BIN, 'quickstart', ...args], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner in time:\n${stdout}\n${stderr}`)), 150_000);
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes('Stop: Ctrl-C')) {
        clearTimeout(timer);
        resolve({ child, stdout: () => stdout, stderr: () => stderr });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`quickstart exited (${code}):\n${stdout}\n${stderr}`));
    });
  });
}

function stop(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.kill('SIGINT');
  });
}

/** Runs a command expected to fail; its exit code and stderr. */
async function failure(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  try {
    await run(process.execPath, [BIN, ...args], { cwd: repoRoot, env, timeout: 120_000 });
  } catch (error) {
    const e = error as { code?: number; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stderr: e.stderr ?? '' };
  }
  throw new Error(`kms ${args.join(' ')} succeeded`);
}

const pinnedId = `LTAIRIG${randomBytes(8).toString('hex').toUpperCase()}`;
const pinnedSecret = `rig-secret-${randomBytes(6).toString('hex')}`;

describe('kms quickstart flags and pinned credentials', () => {
  it('serves on --port/--host from --data-dir with the pinned admin key; a step line each; named instances; the banner example runs in another folder', async () => {
    const envDataDir = await tempDir('kms-qs-env-');
    const dataDir = await tempDir('kms-qs-flag-');
    const port = await freePort();
    const env = baseEnv({
      // Flags win: these would fail (a privileged port) or land elsewhere.
      KMS_PORT: '1',
      KMS_HOST: '127.0.0.2',
      KMS_DATA_DIR: envDataDir,
      DATABASE_URL: await createTestDatabase(),
      KMS_QUEUE_PREFIX: `test-${randomUUID()}`,
      KMS_BOOTSTRAP_ACCESS_KEY_ID: pinnedId,
      KMS_BOOTSTRAP_ACCESS_KEY_SECRET: pinnedSecret,
    });
    const started = await startQuickstart(['--port', String(port), '--host', '127.0.0.1', '--data-dir', dataDir], env);

    expect(started.stdout()).toContain(`Endpoint      127.0.0.1:${port}`);
    expect(started.stdout()).toContain(`(pinned: KMS_BOOTSTRAP_ACCESS_KEY_ID=${pinnedId})`);
    expect(started.stdout()).not.toContain(pinnedSecret);
    for (const step of ['port 127.0.0.1:', 'HSM token', 'API', 'job workers', 'instances']) {
      expect(started.stderr()).toMatch(new RegExp(`^quickstart: \\[\\d+\\.\\d s\\] ${step}`, 'm'));
    }
    expect(started.stderr()).toMatch(/^quickstart: database: DATABASE_URL \(set in the environment\)$/m);
    await expect(stat(path.join(envDataDir, 'credentials.json'))).rejects.toMatchObject({ code: 'ENOENT' });
    const credentials = JSON.parse(await readFile(path.join(dataDir, 'credentials.json'), 'utf8')) as Record<string, string>;
    expect(credentials).toEqual({ AccessKeyId: pinnedId, AccessKeySecret: pinnedSecret, Endpoint: `127.0.0.1:${port}` });

    // A CI pipeline knows the credentials without reading a file; it finds the HSM instance by type.
    const call = openApiClient(`127.0.0.1:${port}`, { accessKeyId: pinnedId, accessKeySecret: pinnedSecret });
    const { KmsInstances } = await call('ListKmsInstances', {});
    const described = await Promise.all(
      (KmsInstances.KmsInstance as Array<{ KmsInstanceId: string }>).map(async ({ KmsInstanceId }) => (await call('GetKmsInstance', { KmsInstanceId })).KmsInstance),
    );
    const byType = Object.fromEntries(described.map((i: { InstanceType: string; InstanceName: string; InstanceId: string }) => [i.InstanceType, i]));
    expect(byType.HSM).toMatchObject({ InstanceName: 'hsm-default' });
    expect(byType.SOFTWARE).toMatchObject({ InstanceName: 'software-default' });
    expect(started.stdout()).toContain(`HSM instance  ${byType.HSM?.InstanceId}   (hsm-default)`);

    // The banner's example file, pasted into an empty folder where the SDK is installed.
    const example = /^(\/\/ kms-example\.mjs[\s\S]*?^console\.log\(.*\);)$/m.exec(started.stdout())?.[1];
    expect(example).toBeDefined();
    expect(started.stdout()).toContain('npm i @alicloud/kms20160120@1.2.0 && node kms-example.mjs');
    const folder = await tempDir('kms-example-');
    await symlink(path.join(repoRoot, 'node_modules'), path.join(folder, 'node_modules'));
    await writeFile(path.join(folder, 'kms-example.mjs'), `${example}\n`);
    const ran = await run(process.execPath, ['kms-example.mjs'], { cwd: folder, env: baseEnv({}) });
    expect(ran.stdout.trim()).toMatch(/^key-\w+ hello$/);

    expect(await stop(started.child)).toBe(0);

    // The same key id with another secret: refused, never silently changed.
    const changed = await failure(['quickstart', '--port', String(port), '--data-dir', dataDir], { ...env, KMS_BOOTSTRAP_ACCESS_KEY_SECRET: `${pinnedSecret}-other` });
    expect(changed.code).toBe(1);
    expect(changed.stderr).toContain(`access key ${pinnedId} already exists with another secret`);
    expect(changed.stderr).not.toContain(pinnedSecret);
  }, 240_000);

  it('refuses a pinned secret shorter than 16 characters before provisioning anything (quickstart and serve)', async () => {
    const dataDir = await tempDir('kms-qs-short-');
    const env = baseEnv({ KMS_PORT: '0', KMS_DATA_DIR: dataDir, KMS_BOOTSTRAP_ACCESS_KEY_ID: pinnedId, KMS_BOOTSTRAP_ACCESS_KEY_SECRET: 'fifteen-chars-x' });
    const quickstart = await failure(['quickstart'], env);
    expect(quickstart.code).toBe(1);
    expect(quickstart.stderr).toContain('KMS_BOOTSTRAP_ACCESS_KEY_SECRET is 15 characters; a pinned secret needs at least 16');
    expect(quickstart.stderr).not.toContain('fifteen-chars-x');
    await expect(stat(path.join(dataDir, 'hsm'))).rejects.toMatchObject({ code: 'ENOENT' });

    const serve = await failure(['serve'], { ...env, DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
    expect(serve.code).toBe(1);
    expect(serve.stderr).toContain('a pinned secret needs at least 16');

    const halfPinned = await failure(['quickstart'], { ...env, KMS_BOOTSTRAP_ACCESS_KEY_SECRET: '' });
    expect(halfPinned.stderr).toContain('set both, or neither');
  }, 120_000);
});
