import { type ChildProcess, execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { TestServer } from './server.js';

const run = promisify(execFile);
export const repoRoot = path.resolve(import.meta.dirname, '../..');

/** The environment a local `kms` verb (or `kms serve`) needs to reach this server's store, Redis and token. */
export function localEnv(server: TestServer, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { KMS_CLOCK: _clock, ...env } = process.env;
  return {
    ...env,
    DATABASE_URL: server.databaseUrl,
    REDIS_URL: server.config.redisUrl ?? 'redis://127.0.0.1:6379',
    KMS_QUEUE_PREFIX: server.config.jobs.queuePrefix,
    KMS_DATA_DIR: server.token.dataDir,
    KMS_HSM_TOKEN_LABEL: server.token.label,
    KMS_HSM_PIN: server.token.userPin,
    SOFTHSM2_CONF: server.token.confPath,
    KMS_LOG_LEVEL: 'warn',
    ...extra,
  };
}

/** Runs `kms …` as an operator would; never throws: the exit code is part of the answer. */
export async function kmsCli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), ...args], { cwd: repoRoot, env, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Polls `check` until it returns true, failing after `deadlineMs` with what it last saw. */
export async function eventually(what: string | (() => string), check: () => Promise<boolean>, deadlineMs = 30_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${typeof what === 'string' ? what : what()}: not within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface ServeProcess {
  child: ChildProcess;
  endpoint: string;
  output(): string;
}

/** Starts `kms serve` (the real command) on this server's store and token, on a free port. */
export async function startServeProcess(server: TestServer, extra: Record<string, string> = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), 'serve'], {
    cwd: repoRoot,
    env: localEnv(server, { KMS_PORT: '0', KMS_HOST: '127.0.0.1', KMS_LOG_LEVEL: 'info', ...extra }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  let endpoint: string | undefined;
  await eventually(
    () => `kms serve listening (output so far: ${text.slice(-2000)})`,
    async () => {
      if (child.exitCode !== null) throw new Error(`kms serve exited (${child.exitCode}):\n${text}`);
      endpoint = /"endpoint":"([^"]+)"[^\n]*hsm-kms listening/.exec(text)?.[1];
      return endpoint !== undefined;
    },
    60_000,
  );
  return { child, endpoint: endpoint!, output: () => text };
}

export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await gone;
  clearTimeout(timer);
}
