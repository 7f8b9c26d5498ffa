import { type Command, InvalidArgumentError } from 'commander';
import type { DeploymentLease } from '../../store/deployment-lease.js';
import { localConfig } from '../local-kms.js';

export function register(program: Command): void {
  program
    .command('serve')
    .description('run the API (DATABASE_URL, REDIS_URL and the HSM token must exist: see `kms hsm init`)')
    .option('--processes <n>', 'server processes sharing the port (node:cluster; each has its own HSM sessions and pool); default KMS_PROCESSES or 1', processCount)
    .action(async (options: { processes?: number }) => {
      const { pinnedBootstrapKey } = await import('../../services/bootstrap.js');
      // A bad KMS_BOOTSTRAP_ACCESS_KEY_* is refused before anything starts.
      pinnedBootstrapKey();
      const config = await localConfig();
      const processes = options.processes ?? processCount(process.env.KMS_PROCESSES ?? '1');
      const { default: cluster } = await import('node:cluster');
      if (processes > 1 || cluster.isWorker) {
        // The deployment lease (store/deployment-lease.ts), held by the primary: `kms restore` is refused while it is held.
        const lease = !cluster.isWorker && config.databaseUrl ? await holdLease(config.databaseUrl, 'serve') : undefined;
        const { serveProcesses } = await import('../../cluster.js');
        try {
          await serveProcesses(config, processes);
        } finally {
          // The primary returns once its processes have stopped; its lease connection would keep it alive.
          await lease?.close();
        }
        return;
      }
      const { runServer, stopOnSignals } = await import('../../main.js');
      // The lease first, so a node never serves a database a `kms restore` is writing. A store
      // that cannot be reached is left to runServer, which says so in its own words.
      const early = config.databaseUrl ? await holdLease(config.databaseUrl, 'serve').catch((error: unknown) => {
        if (isRestoreRunning(error)) throw error;
        return undefined;
      }) : undefined;
      const running = await runServer(config).catch(async (error: unknown) => {
        await early?.close(); // its connection would keep a failed start alive
        throw error;
      });
      // Not taken early (the store was not reachable yet): take it now, or stop and say why (exit 1).
      if (config.databaseUrl && !early) await holdLease(config.databaseUrl, 'serve').catch(async (error: unknown) => {
        await running.stop();
        throw error;
      });
      stopOnSignals(() => running.stop());
    });
}

function isRestoreRunning(error: unknown): boolean {
  return error instanceof Error && error.message.includes('`kms restore` is running');
}

function processCount(value: string): number {
  const count = Number(value);
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new InvalidArgumentError('--processes (KMS_PROCESSES) must be a whole number from 1 to 64.');
  return count;
}

/** Holds the deployment lease for the life of this process (the connection closes with it, or with close()). */
export async function holdLease(databaseUrl: string, role: string): Promise<DeploymentLease> {
  const { holdDeploymentLease } = await import('../../store/deployment-lease.js');
  return holdDeploymentLease(databaseUrl, role, (message) => process.stderr.write(`${JSON.stringify({ level: 40, msg: message })}\n`));
}
