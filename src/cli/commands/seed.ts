import type { Command } from 'commander';

/**
 * `kms seed FILE`: applies a seed file (docs/seeding.md) to the local store and token, the
 * running quickstart's or DATABASE_URL's. Exit status 1 when something conflicts or fails.
 */
export function register(program: Command): void {
  program
    .command('seed <file>')
    .description('apply a seed file (YAML or JSON: instances, keys, aliases, tags, known BYOK material, access keys); idempotent')
    .option('--json', 'print the outcome of every item as JSON')
    .action(async (file: string, o: { json?: boolean }) => {
      const [{ withLocalKms }, { applySeedFile }, { seedApplied }, { formatSeedReport }] = await Promise.all([
        import('../local-kms.js'),
        import('../../services/seed-file.js'),
        import('../../domain/seed.js'),
        import('../seed-report.js'),
      ]);
      const outcomes = await withLocalKms((kms) => applySeedFile(kms.deps, file));
      process.stdout.write(o.json ? `${JSON.stringify(outcomes, null, 2)}\n` : formatSeedReport(outcomes));
      if (!seedApplied(outcomes)) process.exitCode = 1;
    });
}
