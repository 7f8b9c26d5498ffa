import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { withDatabase } from './global-setup.js';
import { waitFor } from './jobs.js';

const repoRoot = path.resolve(import.meta.dirname, '../..');
const run = promisify(execFile);

/**
 * The environment of a deployment of its own, as an operator sets it (issue 19: backup/restore,
 * fault points): no inherited PINs or SOFTHSM2_CONF, so the data dir's token and PIN files are used.
 */
export function deploymentEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ['SOFTHSM2_CONF', 'KMS_HSM_PIN', 'KMS_HSM_SO_PIN', 'KMS_HSM_PIN_FILE', 'KMS_HSM_SO_PIN_FILE', 'DATABASE_URL', 'KMS_DATA_DIR']) delete base[name];
  return { ...base, REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', KMS_WRAPPING_KEY_POOL_SIZE: '0', KMS_LOG_LEVEL: 'info', ...env };
}

/** One `kms …` command to its end; rejects (with code, stdout, stderr) on a non-zero exit. */
export async function kmsCommand(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), ...args], { cwd: repoRoot, env, maxBuffer: 16 << 20 });
}

export interface KmsProcess {
  child: ChildProcess;
  /** The endpoint (`kms serve` only). */
  endpoint: string;
  output(): string;
  /** Resolves with the exit code or signal. */
  exited: Promise<number | NodeJS.Signals | null>;
  stop(): Promise<void>;
}

/** `kms serve` or `kms worker` in its own OS process, until its ready line. */
export async function startKms(verb: 'serve' | 'worker', env: NodeJS.ProcessEnv): Promise<KmsProcess> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), verb], { cwd: repoRoot, env: { KMS_HOST: '127.0.0.1', KMS_PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  const readyLine = verb === 'serve' ? /"endpoint":"([^"]+)"/ : /job workers started/;
  let ready: RegExpExecArray | null = null;
  await waitFor(
    `kms ${verb} to start (so far: ${text.slice(-2000)})`,
    () => {
      ready = readyLine.exec(text);
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`kms ${verb} exited (${child.exitCode ?? child.signalCode}):\n${text}`);
      return ready !== null;
    },
    60_000,
  );
  return {
    child,
    endpoint: verb === 'serve' ? ready![1]! : '',
    output: () => text,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A new, empty database of this test run (no schema: what `createdb` gives an operator). */
export async function createEmptyDatabase(): Promise<string> {
  const baseUrl = process.env.KMS_TEST_DATABASE_BASE_URL;
  const runId = process.env.KMS_TEST_RUN_ID;
  if (!baseUrl || !runId) throw new Error('The test global setup did not run (see vitest.config.ts).');
  const name = `${runId}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return withDatabase(baseUrl, name);
}
