import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialsFilePath, readCredentials } from '../../src/services/credentials-file.js';
import { createTestDatabase } from '../helpers/database.js';
import { openApiClient } from '../helpers/sdk.js';
import { type TestToken, testToken } from '../helpers/token.js';

/**
 * Issue 16: `kms serve` as a user runs it. Every request line reaches stdout although the log
 * destination is asynchronous (a SIGTERM stop flushes it); `--processes 2` runs two server
 * processes on one port, replaces one that dies, and a SIGTERM stops them all.
 */
const repoRoot = path.resolve(import.meta.dirname, '../..');
let token: TestToken;
const dirs: string[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  token = await testToken();
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

interface Served {
  child: ChildProcess;
  port: number;
  dataDir: string;
  /** stdout's JSON lines so far. */
  lines: Array<Record<string, unknown>>;
  stderr: () => string;
  exited: Promise<number | null>;
}

async function serve(args: string[], prepare?: (dataDir: string) => Promise<unknown>): Promise<Served> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-serve-'));
  dirs.push(dataDir);
  await prepare?.(dataDir);
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KMS_DATA_DIR: dataDir,
    KMS_PORT: String(port),
    DATABASE_URL: await createTestDatabase(),
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    KMS_QUEUE_PREFIX: `test-serve-${port}`,
    KMS_HSM_TOKEN_LABEL: token.label,
    KMS_HSM_PIN: token.userPin,
    KMS_HSM_SO_PIN: token.soPin,
    SOFTHSM2_CONF: token.confPath,
    KMS_LOG_LEVEL: 'info',
    KMS_LOG_REQUESTS: 'all',
  };
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), 'serve', ...args], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const lines: Array<Record<string, unknown>> = [];
  let pending = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    const complete = pending.split('\n');
    pending = complete.pop()!;
    for (const line of complete) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, port, dataDir, lines, stderr: () => stderr, exited };
}

async function until(what: string, served: Served, check: () => boolean, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; stderr: ${served.stderr()}`);
    if (served.child.exitCode !== null) throw new Error(`kms serve exited (${served.child.exitCode}) waiting for ${what}: ${served.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const listeningPids = (served: Served) => new Set(served.lines.filter((l) => l.msg === 'hsm-kms listening').map((l) => l.pid));
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function stopped(served: Served): Promise<number | null> {
  served.child.kill('SIGTERM');
  const timeout = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 60_000).unref());
  const code = await Promise.race([served.exited, timeout]);
  if (code === 'hung') throw new Error(`kms serve did not stop: ${served.stderr()}`);
  return code;
}

describe('kms serve', () => {
  it('a SIGTERM stop writes every request line before it exits (asynchronous log destination)', async () => {
    const served = await serve([]);
    await until('the server', served, () => served.lines.some((l) => l.msg === 'hsm-kms listening'));
    const credentials = (await readCredentials(credentialsFilePath(served.dataDir)))!;
    const call = openApiClient(`127.0.0.1:${served.port}`, { accessKeyId: credentials.AccessKeyId, accessKeySecret: credentials.AccessKeySecret });
    const answered = await Promise.all(Array.from({ length: 50 }, () => call('ListKeys', {}).then((r) => r.RequestId as string)));
    expect(await stopped(served)).toBe(0);
    const logged = new Set(served.lines.filter((l) => l.msg === 'rpc').map((l) => l.requestId));
    expect(answered.filter((id) => !logged.has(id))).toEqual([]);
  });

  it('--processes 2: two processes serve one port, a killed one is replaced, SIGTERM stops them all', async () => {
    const served = await serve(['--processes', '2']);
    await until('two server processes', served, () => listeningPids(served).size === 2);
    const [first, second] = [...listeningPids(served)] as number[];
    const credentials = (await readCredentials(credentialsFilePath(served.dataDir)))!;
    const call = openApiClient(`127.0.0.1:${served.port}`, { accessKeyId: credentials.AccessKeyId, accessKeySecret: credentials.AccessKeySecret });
    // One bootstrap admin key for both processes (the second started after the first was up).
    expect((await call('ListKeys', {})).RequestId).toBeTruthy();

    process.kill(first!, 'SIGKILL');
    await until('a replacement process', served, () => listeningPids(served).size === 3);
    const replacement = [...listeningPids(served)].find((pid) => pid !== first && pid !== second) as number;
    expect(alive(replacement)).toBe(true);
    const deadline = Date.now() + 30_000;
    let servedAgain = false;
    while (!servedAgain && Date.now() < deadline) servedAgain = await call('ListKeys', {}).then(() => true, () => false);
    expect(servedAgain).toBe(true);

    expect(await stopped(served)).toBe(0);
    expect([second, replacement].filter((pid) => alive(pid!))).toEqual([]);
  }, 240_000);

  it('--processes 2 whose first process cannot start exits 1 with the reason, leaving no process behind', async () => {
    // credentials.json is a directory: the first process fails after it listens.
    const served = await serve(['--processes', '2'], (dataDir) => mkdir(path.join(dataDir, 'credentials.json')));
    const timeout = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 90_000).unref());
    expect(await Promise.race([served.exited, timeout])).toBe(1);
    expect(served.stderr()).toMatch(/credentials\.json|EISDIR|directory/i);
    expect(served.stderr()).toContain('failed to start');
    expect(listeningPids(served).size).toBe(0);
  }, 120_000);
});
