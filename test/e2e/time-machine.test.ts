import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatTimestamp } from '../../src/api/signature.js';
import { wrapKeyMaterial } from '../../src/domain/client-wrap.js';
import { type JobWorkers, startJobWorkers } from '../../src/jobs/workers.js';
import { manualClockProcesses } from '../../src/shared-offset-clock.js';
import { encodeQuery, send, v1Params } from '../helpers/raw-rpc.js';
import { type CallApi, KMS, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * The time machine (issue 14 §4) on a server started with KMS_CLOCK=manual, moved by the real
 * `kms clock` CLI: the service time moves, real SDK clients keep signing with real time, and the
 * work due at the new time is done at once by the workers (the CLI promotes the due delayed jobs
 * and queues a sweep; the repeatable sweeper is off here, so nothing else could have done it).
 */
const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');
const DAY_S = 86_400;

let server: TestServer;
let workers: JobWorkers;
let call: CallApi;
let cliEnv: NodeJS.ProcessEnv;

interface ClockShown {
  Now: string;
  OffsetSeconds: number;
  NotifiedProcesses?: number;
  PromotedJobs?: { Rotation: number; KeyDeletion: number; MaterialExpiry: number };
  SweepJobId?: string;
}

async function kmsCli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), ...args], { cwd: repoRoot, env });
}

const clockCli = async (...args: string[]) => JSON.parse((await kmsCli(cliEnv, 'clock', ...args)).stdout) as ClockShown;

/** Polls `check` until it returns true, failing after `deadlineMs` with what it last saw. */
async function eventually(what: string | (() => string), check: () => Promise<boolean>, deadlineMs = 30_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${typeof what === 'string' ? what : what()}: not within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function importMaterial(keyId: string, material: Buffer, expireUnix: number): Promise<void> {
  const params = await call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
  const encrypted = wrapKeyMaterial(Buffer.from(params.PublicKey, 'base64'), 'RSAES_OAEP_SHA_256', material).toString('base64');
  await call('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: encrypted, ImportToken: params.ImportToken, KeyMaterialExpireUnix: expireUnix });
}

beforeAll(async () => {
  server = await startServer({ env: { KMS_CLOCK: 'manual' } });
  workers = await startJobWorkers(server.kms, { sweeper: false });
  call = openApiClient(server.endpoint, server.admin);
  const { KMS_CLOCK: _clock, DATABASE_URL: _db, ...env } = process.env;
  cliEnv = {
    ...env,
    // A data dir with no runtime.json: the CLI attaches to this server's Redis and prefix only.
    KMS_DATA_DIR: await mkdtemp(path.join(tmpdir(), 'kms-clock-cli-')),
    REDIS_URL: server.config.redisUrl,
    KMS_QUEUE_PREFIX: server.config.jobs.queuePrefix,
  };
}, 60_000);

let workerProcess: ChildProcess | undefined;

afterAll(async () => {
  if (workerProcess && workerProcess.exitCode === null) {
    const exited = new Promise((resolve) => workerProcess?.once('exit', resolve));
    workerProcess.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
    if (workerProcess.exitCode === null) workerProcess.kill('SIGKILL');
  }
  await workers?.close();
  await server?.stop();
});

describe('kms clock against a KMS_CLOCK=manual server', () => {
  it('show: the service time is the wall clock until moved', async () => {
    const shown = await clockCli('show');
    expect(shown.OffsetSeconds).toBe(0);
    expect(Math.abs(Date.parse(shown.Now) - Date.now())).toBeLessThan(5_000);
  });

  it('advance: material and import tokens due at the new time expire at once through the workers; signatures keep the wall clock', async () => {
    const before = await clockCli('show');
    const keyId = (await call('CreateKey', { Origin: 'EXTERNAL', DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string;
    const expireUnix = Math.floor(Date.parse(before.Now) / 1000) + DAY_S;
    await importMaterial(keyId, randomBytes(32), expireUnix);
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('Enabled');

    // An import token (24 h) issued now: expired at the new time, its wrapping pair cleaned up.
    const pendingKey = (await call('CreateKey', { Origin: 'EXTERNAL', DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string;
    const token = await call('GetParametersForImport', { KeyId: pendingKey, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });

    const expiredPairs = async (at: Date) =>
      (await server.kms.deps.db.query<{ n: string }>('SELECT count(*) AS n FROM wrapping_keys WHERE expires_at <= $1', [at])).rows[0]?.n;
    expect(Number(await expiredPairs(new Date(Date.parse(before.Now) + 30 * DAY_S * 1000)))).toBeGreaterThanOrEqual(1);

    const moved = await clockCli('advance', '30d');
    expect(moved.OffsetSeconds).toBe(before.OffsetSeconds + 30 * DAY_S);
    expect(moved.NotifiedProcesses).toBeGreaterThanOrEqual(1);
    expect(moved.SweepJobId).toMatch(/^sweep-now-/);
    // The import's delayed expiry job (a day of wall clock away) was promoted to run now.
    expect(moved.PromotedJobs).toEqual({ Rotation: 0, KeyDeletion: 0, MaterialExpiry: 1 });
    expect(Math.abs(Date.parse(moved.Now) - (Date.now() + moved.OffsetSeconds * 1000))).toBeLessThan(5_000);

    // Both SDK generations sign with the real time, 30 days behind the service: still accepted.
    await eventually('material expired', async () => (await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState === 'PendingImport');
    const legacy = legacyClient(server.endpoint, server.admin);
    const created = await legacy.createKey(new KMS.CreateKeyRequest({ DKMSInstanceId: server.softwareInstanceId }));
    // … and what the service records is dated with its own time.
    expect(Math.abs(Date.parse(created.keyMetadata.creationDate as string) - Date.parse(moved.Now))).toBeLessThan(60_000);
    const encrypted = await legacy.encrypt(new KMS.EncryptRequest({ keyId: created.keyMetadata.keyId, plaintext: 'signed with real time' }));
    expect((await legacy.decrypt(new KMS.DecryptRequest({ ciphertextBlob: encrypted.ciphertextBlob }))).plaintext).toBe('signed with real time');

    const lateImport = await sdkError(() =>
      call('ImportKeyMaterial', {
        KeyId: pendingKey,
        EncryptedKeyMaterial: wrapKeyMaterial(Buffer.from(token.PublicKey, 'base64'), 'RSAES_OAEP_SHA_256', randomBytes(32)).toString('base64'),
        ImportToken: token.ImportToken,
      }),
    );
    expect(lateImport.code).toBe('ExpiredImportToken');
    await eventually('expired wrapping pairs cleaned up', async () => (await expiredPairs(new Date(moved.Now))) === '0');

    const health = (await (await fetch(`http://${server.endpoint}/health`)).json()) as { clock: { mode: string; offsetSeconds: number } };
    expect(health.clock.mode).toBe('manual');
    expect(Math.abs(health.clock.offsetSeconds - moved.OffsetSeconds)).toBeLessThanOrEqual(1);
  });

  it('set: to a later time, never back', async () => {
    const now = await clockCli('show');
    const target = new Date(Date.parse(now.Now) + 2 * DAY_S * 1000);
    target.setUTCMilliseconds(0);
    const set = await clockCli('set', target.toISOString());
    expect(Math.abs(Date.parse(set.Now) - target.getTime())).toBeLessThan(5_000);
    const back = await kmsCli(cliEnv, 'clock', 'set', now.Now).catch((e: { code: number; stderr: string }) => e);
    expect(back).toMatchObject({ code: 1 });
    expect((back as { stderr: string }).stderr).toContain('only moves forward');
    expect((await clockCli('show')).OffsetSeconds).toBe(set.OffsetSeconds);
  });

  it('refuses bad durations and times, and a Redis where no process runs the manual clock', async () => {
    for (const args of [['advance', '0'], ['advance', '3x'], ['advance', '-1d'], ['set', 'tomorrow']]) {
      const failure = await kmsCli(cliEnv, 'clock', ...args).catch((e: { code: number; stderr: string }) => e);
      expect(failure, args.join(' ')).toMatchObject({ code: 1 });
    }
    const elsewhere = { ...cliEnv, KMS_QUEUE_PREFIX: 'no-manual-clock-here' };
    const refused = await kmsCli(elsewhere, 'clock', 'advance', '1d').catch((e: { code: number; stderr: string }) => e);
    expect(refused).toMatchObject({ code: 1 });
    expect((refused as { stderr: string }).stderr).toContain('KMS_CLOCK=manual');
    // A Redis that does not answer: a clear refusal that never shows REDIS_URL's password.
    const unreachable = { ...cliEnv, REDIS_URL: 'redis://:s3cret-pass@127.0.0.1:1' };
    const down = await kmsCli(unreachable, 'clock', 'show').catch((e: { code: number; stdout: string; stderr: string }) => e);
    expect(down).toMatchObject({ code: 1 });
    expect((down as { stderr: string }).stderr).toContain("cannot reach the rig's Redis");
    expect(JSON.stringify(down)).not.toContain('s3cret-pass');
  });

  it('the timestamp window stays on the wall clock: a request signed with the service time (days ahead) is refused', async () => {
    const service = await clockCli('show');
    expect(service.OffsetSeconds).toBeGreaterThan(DAY_S);
    const params = v1Params('DescribeKey', { Timestamp: formatTimestamp(new Date(service.Now)) }, server.admin);
    const answer = await send(server.endpoint, { path: `/?${encodeQuery(params)}` });
    expect(answer.body.Code).toBe('IllegalTimestamp');
  });
});

describe('across processes: a separate `kms worker` on the same Redis and prefix', () => {
  it('receives the move and does the due work itself (the in-process workers are stopped)', async () => {
    await workers.close();
    let output = '';
    workerProcess = spawn(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), 'worker'], {
      cwd: repoRoot,
      env: {
        ...cliEnv,
        DATABASE_URL: server.databaseUrl,
        KMS_DATA_DIR: server.token.dataDir,
        KMS_HSM_TOKEN_LABEL: server.token.label,
        KMS_HSM_PIN: server.token.userPin,
        KMS_HSM_SO_PIN: server.token.soPin,
        SOFTHSM2_CONF: server.token.confPath,
        KMS_CLOCK: 'manual',
        KMS_SWEEP_INTERVAL_SECONDS: '3600',
        KMS_WRAPPING_KEY_POOL_SIZE: '0',
        KMS_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    workerProcess.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    workerProcess.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    // Two manual clocks on this prefix once the worker is up: the server's and the worker's.
    const redis = new Redis(server.config.redisUrl ?? 'redis://127.0.0.1:6379');
    try {
      await eventually(() => `the worker's manual clock (worker said: ${output})`, async () => (await manualClockProcesses(redis, server.config.jobs.queuePrefix)) === 2, 60_000);
    } finally {
      redis.disconnect();
    }

    const now = await clockCli('show');
    const keyId = (await call('CreateKey', { Origin: 'EXTERNAL', DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string;
    await importMaterial(keyId, randomBytes(32), Math.floor(Date.parse(now.Now) / 1000) + DAY_S);
    const moved = await clockCli('advance', '2d');
    expect(moved.NotifiedProcesses).toBe(2);
    await eventually(() => `material expired by the worker process (it said: ${output})`, async () => (await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState === 'PendingImport');
  }, 120_000);
});
