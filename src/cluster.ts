import cluster, { type Worker } from 'node:cluster';
import { destination, pino } from 'pino';
import type { KmsConfig } from './config.js';

/**
 * `kms serve --processes N` (issue 16): N server processes sharing one listening port through
 * node:cluster. Each is a whole `kms serve` — its own HSM sessions (KMS_HSM_SESSIONS logged-in
 * sessions each), its own Postgres pool (KMS_DB_POOL_SIZE connections each), its own Redis
 * connections and metadata caches (kept coherent across processes by the invalidation channel,
 * as across nodes) — so HSM sessions, pool connections and cache memory all scale by N.
 *
 * The primary serves nothing: it starts the first process alone (migrations and the first
 * admin credentials happen once), then the others; restarts a process that dies after it
 * started; stops everything (exit 1) when one fails to start, or when processes keep dying
 * (more than MAX_RESTARTS within RESTART_WINDOW_MS); and on SIGTERM/SIGINT tells every process
 * to stop gracefully, waits for them, and exits.
 */
export const MAX_RESTARTS = 5;
export const RESTART_WINDOW_MS = 30_000;

/** What a server process tells the primary (IPC). */
type WorkerMessage = { kind: 'kms-ready'; endpoint: string };
/** What the primary tells a server process. */
type PrimaryMessage = { kind: 'kms-stop' };

export async function serveProcesses(config: KmsConfig, processes: number): Promise<void> {
  if (cluster.isWorker) return serveAsWorker(config);
  return runPrimary(processes);
}

/** One server process under the primary (loads the service; the primary never does): a sync log destination (lines of several processes on one pipe must not interleave). */
async function serveAsWorker(config: KmsConfig): Promise<void> {
  const logger = pino(
    { level: config.logLevel, base: { service: 'hsm-kms', pid: process.pid, worker: cluster.worker?.id } },
    // One write() per line: atomic on a pipe shared with the other processes (async batches are not).
    destination({ dest: 1, sync: true }),
  );
  const { runServer, stopOnSignals } = await import('./main.js');
  let running: Awaited<ReturnType<typeof runServer>>;
  try {
    running = await runServer(config, { logger });
  } catch (error) {
    // The IPC channel to the primary would keep this process alive: say why and leave.
    process.stderr.write(`kms: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
  const stop = stopOnSignals(() => running.stop());
  process.on('message', (message: PrimaryMessage) => {
    if (message?.kind === 'kms-stop') stop();
  });
  process.send?.({ kind: 'kms-ready', endpoint: running.endpoint } satisfies WorkerMessage);
}

function runPrimary(processes: number): Promise<void> {
  const say = (line: string) => process.stderr.write(`kms serve: ${line}\n`);
  const ready = new Set<Worker>();
  const restarts: number[] = [];
  let stopping = false;

  return new Promise<void>((resolve) => {
    const finish = (code: number) => {
      process.exitCode = code;
      resolve();
    };
    const stopAll = (code: number) => {
      if (stopping) return;
      stopping = true;
      const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
      if (workers.length === 0) return finish(code);
      let left = workers.length;
      for (const worker of workers) {
        worker.once('exit', () => {
          left -= 1;
          if (left === 0) finish(code);
        });
        if (worker.isConnected()) worker.send({ kind: 'kms-stop' } satisfies PrimaryMessage);
        else worker.process.kill('SIGTERM');
      }
    };

    const start = (): Worker => {
      const worker = cluster.fork();
      worker.on('message', (message: WorkerMessage) => {
        if (message?.kind !== 'kms-ready') return;
        ready.add(worker);
        if (ready.size === 1 && Object.keys(cluster.workers ?? {}).length === 1) {
          say(`${message.endpoint}: process ${worker.process.pid} serving; starting ${processes - 1} more`);
          for (let i = 1; i < processes; i++) start();
        } else say(`process ${worker.process.pid} serving`);
      });
      worker.on('exit', (code, signal) => {
        const wasReady = ready.delete(worker);
        if (stopping) return;
        if (!wasReady) {
          say(`a server process failed to start (exit ${signal ?? code}); stopping`);
          return stopAll(1);
        }
        const now = Date.now();
        restarts.push(now);
        while (restarts.length > 0 && restarts[0]! < now - RESTART_WINDOW_MS) restarts.shift();
        if (restarts.length > MAX_RESTARTS) {
          say(`server processes died ${restarts.length} times within ${RESTART_WINDOW_MS / 1000} s; stopping`);
          return stopAll(1);
        }
        say(`process ${worker.process.pid} died (${signal ?? `exit ${code}`}); starting another`);
        start();
      });
      return worker;
    };

    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        // A second signal: stop now.
        for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
        process.exit(1);
      }
      signalled = true;
      say(`${signal}: stopping ${Object.keys(cluster.workers ?? {}).length} processes…`);
      stopAll(0);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    start();
  });
}
