import type { Command } from 'commander';

/**
 * `kms reset`: empties the running rig (or DATABASE_URL's store) of keys, versions, aliases,
 * tags and audit, destroying the keys' token objects; `--all` also removes instances and access
 * keys, except the admin key of credentials.json, so the rig stays reachable.
 */
export function register(program: Command): void {
  program
    .command('reset')
    .description('delete every key (with its token objects), alias, tag and audit event; --all: instances and access keys too')
    .option('--all', 'also delete the instances and every access key but the one in credentials.json')
    .option('--yes', 'required when DATABASE_URL names the store: a reset is meant for a quickstart rig')
    .action(async (o: { all?: boolean; yes?: boolean }) => {
      if (process.env.DATABASE_URL && !o.yes) {
        throw new Error('DATABASE_URL is set: kms reset would delete every key of that database for good; pass --yes if this is a test rig.');
      }
      const [{ withLocalKms }, { resetRig }, { readCredentials }, path] = await Promise.all([
        import('../local-kms.js'),
        import('../../services/reset.js'),
        import('../../services/bootstrap.js'),
        import('node:path'),
      ]);
      const result = await withLocalKms(async (kms) => {
        const credentials = await readCredentials(path.join(kms.deps.config.dataDir, 'credentials.json'));
        return resetRig(kms.deps, { everything: o.all === true, keepAccessKeyId: credentials?.AccessKeyId });
      });
      process.stdout.write(
        `reset: ${result.keys} keys, ${result.versions} versions and ${result.tokenObjects} token objects deleted; audit cleared${o.all ? '; instances and access keys deleted (credentials.json kept)' : ''}\n`,
      );
    });
}
