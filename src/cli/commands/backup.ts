import type { Command } from 'commander';

/** `kms backup` and `kms restore` of a deployment (cli/deployment-backup.ts; README, "Operations: backup and restore"). */
export function register(program: Command): void {
  program
    .command('backup')
    .description('copy the database (pg_dump), the SoftHSM2 token directory and the PIN/secret files into a new directory (0700) with a manifest')
    .requiredOption('--out <dir>', 'a new or empty directory')
    .option('--no-token', 'skip the token directory (a network HSM: back its keys up with the vendor\'s tools)')
    .action(async (o: { out: string; token: boolean }) => {
      const [{ loadConfig }, { backupDeployment }] = await Promise.all([import('../../config.js'), import('../deployment-backup.js')]);
      const manifest = await backupDeployment(loadConfig(), { out: o.out, token: o.token });
      const parts = [manifest.database.kind === 'postgres' ? 'database dump' : 'embedded store', manifest.token ? 'token directory' : 'no token (--no-token)', `${manifest.secrets.length} secret file(s)`];
      process.stdout.write(`backed up to ${o.out}: ${parts.join(', ')}; migration level ${manifest.migrationLevel ?? 'none'}\n`);
      if (manifest.pinsFromEnvironment.length > 0) process.stdout.write(`not in the backup (set in the environment): ${manifest.pinsFromEnvironment.join(', ')}; keep them in your secret store\n`);
    });
  program
    .command('restore')
    .description('restore a `kms backup` into DATABASE_URL (a new database) and the data dir; refused while a kms serve or kms worker runs on that database')
    .requiredOption('--from <dir>', 'a directory written by `kms backup`')
    .option('--replace', 'overwrite a database that holds a schema and a token directory that holds tokens')
    .action(async (o: { from: string; replace?: boolean }) => {
      const [{ loadConfig }, { restoreDeployment }] = await Promise.all([import('../../config.js'), import('../deployment-backup.js')]);
      const restored = await restoreDeployment(loadConfig(), { from: o.from, replace: o.replace === true });
      process.stdout.write(
        `restored the backup of ${restored.manifest.createdAt} (migration level ${restored.manifest.migrationLevel ?? 'none'})` +
          `${restored.tokenDir ? `; token directory ${restored.tokenDir}` : ''}. Start kms serve and kms worker; the worker's reconciler reclaims token objects made after the backup.\n`,
      );
    });
}
