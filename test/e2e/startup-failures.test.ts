import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { runServer } from '../../src/main.js';
import { createTestDatabase } from '../helpers/database.js';
import { type TestToken, testToken } from '../helpers/token.js';

/**
 * Issue 13, section 5: start-up hygiene. A `kms serve` whose start fails after its listener is
 * up must close it and exit non-zero with the reason (it used to keep answering every request
 * 500 "Cannot use a pool after calling end"); a quickstart on a taken KMS_PORT must say so
 * before provisioning anything.
 */
const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');
const dirs: string[] = [];
let token: TestToken;
let databaseUrl: string;

beforeAll(async () => {
  token = await testToken();
  databaseUrl = await createTestDatabase();
});

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** A data dir whose credentials file cannot be written: `credentials.json` is a directory. */
async function dataDirWithUnwritableCredentials(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kms-startup-'));
  dirs.push(dir);
  await mkdir(path.join(dir, 'credentials.json'));
  return dir;
}

/** A port nothing listens on now (the OS picks it; released at once). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Whether something accepts connections on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function serviceEnv(dataDir: string, port: number): Record<string, string> {
  return {
    KMS_DATA_DIR: dataDir,
    KMS_PORT: String(port),
    DATABASE_URL: databaseUrl,
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    KMS_HSM_TOKEN_LABEL: token.label,
    KMS_HSM_PIN: token.userPin,
    KMS_HSM_SO_PIN: token.soPin,
    SOFTHSM2_CONF: token.confPath,
    KMS_LOG_LEVEL: 'silent',
  };
}

describe('kms serve whose start-up fails after it listens', () => {
  it('closes the listener and rejects with the reason (in process)', async () => {
    const port = await freePort();
    const env = serviceEnv(await dataDirWithUnwritableCredentials(), port);
    const config = loadConfig(env);
    const saved = { pin: process.env.KMS_HSM_PIN, so: process.env.KMS_HSM_SO_PIN };
    // runServer reads the PINs from the environment, as `kms serve` does.
    process.env.KMS_HSM_PIN = token.userPin;
    process.env.KMS_HSM_SO_PIN = token.soPin;
    try {
      await expect(runServer(config)).rejects.toThrow(/credentials\.json|EISDIR|directory/i);
    } finally {
      process.env.KMS_HSM_PIN = saved.pin;
      process.env.KMS_HSM_SO_PIN = saved.so;
      if (saved.pin === undefined) delete process.env.KMS_HSM_PIN;
      if (saved.so === undefined) delete process.env.KMS_HSM_SO_PIN;
    }
    expect(await accepts(port)).toBe(false);
  });

  it('exits non-zero with the reason on stderr (the `kms serve` process)', async () => {
    const port = await freePort();
    const env = { ...process.env, ...serviceEnv(await dataDirWithUnwritableCredentials(), port) };
    const failure = await run(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), 'serve'], { cwd: repoRoot, env, timeout: 60_000 }).then(
      () => undefined,
      (error: { code?: number; stderr?: string; killed?: boolean }) => error,
    );
    expect(failure).toBeDefined();
    expect(failure?.killed).toBeFalsy();
    expect(failure?.code).toBe(1);
    expect(failure?.stderr).toMatch(/kms: .*(credentials\.json|EISDIR|directory)/i);
    expect(await accepts(port)).toBe(false);
  });
});

describe('kms quickstart on a taken KMS_PORT', () => {
  it('says so, naming KMS_PORT, before provisioning a token or a database', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-quickstart-port-'));
    dirs.push(dataDir);
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, KMS_DATA_DIR: dataDir, KMS_PORT: String(port), KMS_LOG_LEVEL: 'warn' };
      for (const name of ['DATABASE_URL', 'REDIS_URL', 'SOFTHSM2_CONF', 'KMS_HSM_PIN', 'KMS_HSM_SO_PIN']) delete env[name];
      const failure = await run(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), 'quickstart'], { cwd: repoRoot, env, timeout: 60_000 }).then(
        () => undefined,
        (error: { code?: number; stderr?: string }) => error,
      );
      expect(failure?.code).toBe(1);
      expect(failure?.stderr).toContain(`KMS_PORT ${port}`);
      expect(failure?.stderr).toMatch(/in use/);
      // Nothing was provisioned: no token, no PINs, no database, no Redis data.
      expect(await readdir(dataDir)).toEqual([]);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });
});
