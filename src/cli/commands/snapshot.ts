import type { Command } from 'commander';

/** `kms snapshot save|restore|list`: copies of a stopped quickstart's data dir (cli/rig-snapshots.ts). */
export function register(program: Command): void {
  const snapshot = program
    .command('snapshot')
    .description('save or restore the whole state (token, embedded database, redis) of a stopped quickstart');
  const dataDir = async () => {
    const { loadConfig } = await import('../../config.js');
    const config = loadConfig();
    if (config.databaseUrl) throw new Error('DATABASE_URL is set: snapshots cover the embedded database of the data dir only (unset it, or snapshot that database with its own tools).');
    return config.dataDir;
  };
  snapshot
    .command('save <name>')
    .description('copy the data dir (KMS_DATA_DIR, default .kms) to <data dir>/snapshots/<name>; refused while the rig runs')
    .option('--replace', 'overwrite an existing snapshot of that name')
    .action(async (name: string, o: { replace?: boolean }) => {
      const { saveSnapshot } = await import('../rig-snapshots.js');
      const saved = await saveSnapshot(await dataDir(), name, o);
      process.stdout.write(`saved snapshot ${name}: ${saved.dir} (${saved.entries.join(', ')})\n`);
    });
  snapshot
    .command('restore <name>')
    .description('replace the data dir\'s state with the snapshot <name>; refused while the rig runs')
    .action(async (name: string) => {
      const { restoreSnapshot } = await import('../rig-snapshots.js');
      const restored = await restoreSnapshot(await dataDir(), name);
      process.stdout.write(`restored snapshot ${name} from ${restored.dir}; start the rig again to use it\n`);
    });
  snapshot
    .command('list')
    .description('the snapshots of the data dir')
    .action(async () => {
      const { listSnapshots } = await import('../rig-snapshots.js');
      const { loadConfig } = await import('../../config.js');
      for (const s of await listSnapshots(loadConfig().dataDir)) process.stdout.write(`${s.name}  ${s.savedAt}\n`);
    });
}
