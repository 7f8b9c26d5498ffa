import { Command } from 'commander';
import { registerAccessKeyCommands } from './commands/access-key.js';
import { registerAliasCommands } from './commands/alias.js';
import { registerByokCommands } from './commands/byok.js';
import { registerClockCommands } from './commands/clock.js';
import { registerEnvelopeCommands } from './commands/envelope.js';
import { registerHsmCommands } from './commands/hsm.js';
import { registerInstanceCommands } from './commands/instance.js';
import { registerKeyCommands } from './commands/key.js';
import { registerMacCommands } from './commands/mac.js';
import { registerMigrateCommand } from './commands/migrate.js';
import { registerQuickstartCommand } from './commands/quickstart.js';
import { registerServeCommand } from './commands/serve.js';
import { registerSigningCommands } from './commands/signing.js';
import { registerTagCommands } from './commands/tag.js';
import { registerWorkerCommand } from './commands/worker.js';

const program = new Command()
  .name('kms')
  .description('hsm-kms: an Alibaba Cloud KMS-compatible key management service on a PKCS#11 HSM')
  .showHelpAfterError();

registerServeCommand(program);
registerWorkerCommand(program);
registerQuickstartCommand(program);
registerMigrateCommand(program);
registerHsmCommands(program);
registerInstanceCommands(program);
registerAccessKeyCommands(program);
registerByokCommands(program);
registerKeyCommands(program);
registerEnvelopeCommands(program);
registerSigningCommands(program);
registerMacCommands(program);
registerAliasCommands(program);
registerTagCommands(program);
registerClockCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`kms: ${message}\n`);
  process.exitCode = 1;
}
