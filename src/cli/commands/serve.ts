import type { Command } from 'commander';
import { runServer, stopOnSignals } from '../../main.js';
import { localConfig } from '../local-kms.js';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the API (DATABASE_URL, REDIS_URL and the HSM token must exist: see `kms hsm init`)')
    .action(async () => {
      const config = await localConfig();
      const running = await runServer(config);
      stopOnSignals(() => running.stop());
    });
}
