import type { Command } from 'commander';
import { createDb } from '../../store/db.js';
import { migrate } from '../../store/migrate.js';
import { localConfig } from '../local-kms.js';
import { print } from '../output.js';

export function registerMigrateCommand(program: Command): void {
  program
    .command('migrate')
    .description('apply pending database migrations (DATABASE_URL)')
    .action(async () => {
      const config = await localConfig();
      if (!config.databaseUrl) throw new Error('DATABASE_URL is not set.');
      const db = createDb(config.databaseUrl, 1);
      try {
        print({ applied: await migrate(db) });
      } finally {
        await db.end();
      }
    });
}
