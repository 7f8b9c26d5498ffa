import type { Command } from 'commander';
import { localConfig } from '../local-kms.js';
import { print } from '../output.js';

export function register(program: Command): void {
  program
    .command('migrate')
    .description('apply pending database migrations (DATABASE_URL)')
    .action(async () => {
      const config = await localConfig();
      if (!config.databaseUrl) throw new Error('DATABASE_URL is not set.');
      const [{ createDb }, { migrate }] = await Promise.all([import('../../store/db.js'), import('../../store/migrate.js')]);
      const db = createDb(config.databaseUrl, 1);
      try {
        print({ applied: await migrate(db) });
      } finally {
        await db.end();
      }
    });
}
