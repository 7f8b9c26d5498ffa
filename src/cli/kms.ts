import { readFileSync } from 'node:fs';
import { Command } from 'commander';

/**
 * The `kms` program. Start-up time is part of the interface (`kms --help` and a client verb
 * well under 300 ms), so this file and every command module stay light:
 *
 * - A command module exports `register(program)`, which only defines commands (names, options,
 *   descriptions). Anything heavy — pg, pkcs11js, bullmq, ioredis, pino, zod, the services, the
 *   store — is imported inside the action (`const { x } = await import('../../services/x.js')`).
 *   test/e2e/cli-startup.test.ts fails when `kms --help` loads one of them.
 * - Below, each module is one line: the top-level commands it defines and its import. Running one
 *   of those commands loads that module only; `kms --help`, `kms help …` and anything unknown load
 *   them all.
 *
 * To add a command: write `commands/<name>.ts` exporting `register(program: Command)`, then add
 * its line here (the order here is the order of `kms --help`).
 */
interface CommandModule {
  readonly commands: readonly string[];
  readonly load: () => Promise<{ register(program: Command): void }>;
}

const COMMAND_MODULES: readonly CommandModule[] = [
  { commands: ['quickstart'], load: () => import('./commands/quickstart.js') },
  { commands: ['serve'], load: () => import('./commands/serve.js') },
  { commands: ['worker'], load: () => import('./commands/worker.js') },
  { commands: ['migrate'], load: () => import('./commands/migrate.js') },
  { commands: ['hsm'], load: () => import('./commands/hsm.js') },
  { commands: ['instance'], load: () => import('./commands/instance.js') },
  { commands: ['quota'], load: () => import('./commands/quota.js') },
  { commands: ['access-key'], load: () => import('./commands/access-key.js') },
  { commands: ['audit'], load: () => import('./commands/audit.js') },
  { commands: ['key'], load: () => import('./commands/key.js') },
  { commands: ['encrypt', 'decrypt', 'data-key', 're-encrypt', 'random'], load: () => import('./commands/envelope.js') },
  { commands: ['public-key', 'sign', 'verify'], load: () => import('./commands/signing.js') },
  { commands: ['mac'], load: () => import('./commands/mac.js') },
  { commands: ['import-params', 'wrap-material', 'import-material', 'delete-material'], load: () => import('./commands/byok.js') },
  { commands: ['alias'], load: () => import('./commands/alias.js') },
  { commands: ['tag'], load: () => import('./commands/tag.js') },
  { commands: ['clock'], load: () => import('./commands/clock.js') },
  { commands: ['seed'], load: () => import('./commands/seed.js') },
  { commands: ['reset'], load: () => import('./commands/reset.js') },
  { commands: ['snapshot'], load: () => import('./commands/snapshot.js') },
  { commands: ['backup', 'restore'], load: () => import('./commands/backup.js') },
];

/** package.json's version (two folders up from src/cli/ and from dist/cli/ alike). */
function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return manifest.version ?? '0.0.0';
}

/** The modules to load for this command line: the one defining its command, else all. */
function modulesFor(argv: readonly string[]): readonly CommandModule[] {
  const name = argv[2];
  const owner = COMMAND_MODULES.find((m) => name !== undefined && m.commands.includes(name));
  return owner ? [owner] : COMMAND_MODULES;
}

const program = new Command()
  .name('kms')
  .description('hsm-kms: an Alibaba Cloud KMS-compatible key management service on a PKCS#11 HSM')
  .version(packageVersion(), '-V, --version', 'print the version')
  .showHelpAfterError()
  // `kms --version` only before the command: `kms sign K --version V` names a key version.
  .enablePositionalOptions();

try {
  for (const module of await Promise.all(modulesFor(process.argv).map((m) => m.load()))) module.register(program);
  await program.parseAsync(process.argv);
} catch (error) {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`kms: ${message}\n`);
  process.exitCode = 1;
}
