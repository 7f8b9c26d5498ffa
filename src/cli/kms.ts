import { Command } from 'commander';
import { registerAccessKeyCommands } from './commands/access-key.js';
import { registerHsmCommands } from './commands/hsm.js';
import { registerInstanceCommands } from './commands/instance.js';
import { registerMigrateCommand } from './commands/migrate.js';
import { registerQuickstartCommand } from './commands/quickstart.js';
import { registerServeCommand } from './commands/serve.js';

const program = new Command()
  .name('kms')
  .description('hsm-kms: an Alibaba Cloud KMS-compatible key management service on a PKCS#11 HSM')
  .showHelpAfterError();

registerServeCommand(program);
registerQuickstartCommand(program);
registerMigrateCommand(program);
registerHsmCommands(program);
registerInstanceCommands(program);
registerAccessKeyCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`kms: ${message}\n`);
  process.exitCode = 1;
}
