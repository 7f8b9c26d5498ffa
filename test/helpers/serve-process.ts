import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { waitFor } from './jobs.js';
import type { TestServer } from './server.js';

const repoRoot = path.resolve(import.meta.dirname, '../..');

export interface ServeProcess {
  child: ChildProcess;
  pid: number;
  endpoint: string;
  output(): string;
  stop(): Promise<void>;
}

/**
 * `kms serve` as its own OS process, on the test server's database, queue prefix (so the
 * same cache invalidation channel) and SoftHSM2 token: another node of the same deployment.
 */
export async function startServeProcess(server: TestServer, env: Record<string, string> = {}): Promise<ServeProcess> {
  const started = await startKmsProcess(server, 'serve', /"endpoint":"([^"]+)"/, env);
  if (!started.ready) throw new Error(`kms serve was killed at its fault point before it served:\n${started.output().slice(-2000)}`);
  return { ...started, endpoint: started.ready[1]! };
}

/** `kms worker` as its own OS process on the test server's deployment (database, queues, token). */
export async function startWorkerProcess(server: TestServer, env: Record<string, string> = {}): Promise<Omit<ServeProcess, 'endpoint'>> {
  return startKmsProcess(server, 'worker', /job workers started/, { KMS_SWEEP_INTERVAL_SECONDS: '1', ...env });
}

/** What every process of the test server's deployment shares: its database, queues and token. */
export function deploymentEnv(server: TestServer): Record<string, string> {
  return {
    DATABASE_URL: server.databaseUrl,
    REDIS_URL: server.config.redisUrl ?? 'redis://127.0.0.1:6379',
    KMS_QUEUE_PREFIX: server.config.jobs.queuePrefix,
    KMS_DATA_DIR: server.token.dataDir,
    KMS_HSM_TOKEN_LABEL: server.token.label,
    KMS_HSM_PIN: server.token.userPin,
    KMS_HSM_SO_PIN: server.token.soPin,
    SOFTHSM2_CONF: server.token.confPath,
  };
}

async function startKmsProcess(
  server: TestServer,
  verb: 'serve' | 'worker',
  readyLine: RegExp,
  env: Record<string, string>,
): Promise<Omit<ServeProcess, 'endpoint'> & { ready: RegExpExecArray | null }> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), verb], {
    cwd: repoRoot,
    env: {
      ...process.env,
      ...deploymentEnv(server),
      KMS_HOST: '127.0.0.1',
      KMS_PORT: '0',
      KMS_WRAPPING_KEY_POOL_SIZE: '0',
      KMS_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  let ready: RegExpExecArray | null = null;
  // A node given a fault point may SIGKILL itself before its ready line (a worker takes the
  // due jobs it finds at once): that ends the wait too, and the caller checks the kill.
  const killedAtFaultPoint = () => env.KMS_FAULT_POINTS !== undefined && child.signalCode !== null;
  try {
    await waitFor(
      `kms ${verb} to start`,
      () => {
        ready = readyLine.exec(text);
        if (ready !== null || killedAtFaultPoint()) return true;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`kms ${verb} ended (${child.exitCode ?? child.signalCode}):\n${text}`);
        return false;
      },
      60_000,
    );
  } catch (error) {
    // The output as it is now, not as it was when the wait began.
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n(output so far: ${text.slice(-2000)})`);
  }
  return {
    child,
    pid: child.pid!,
    ready,
    output: () => text,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
    },
  };
}
