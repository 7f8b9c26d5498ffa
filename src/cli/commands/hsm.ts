import type { Command } from 'commander';
import { print } from '../output.js';

export function register(program: Command): void {
  const hsm = program.command('hsm').description('the HSM token: provision it, or check what it can do');
  hsm
    .command('init')
    .description('provision the SoftHSM2 token under the data dir (idempotent) and the service keys')
    .action(async () => {
      const { initHsm } = await import('../hsm-init.js');
      print(await initHsm());
    });
  hsm
    .command('status')
    .description('open the token (same data dir and SOFTHSM2_CONF default as `hsm init`) and print what the capability probe found')
    .action(async () => {
      const { hsmStatus } = await import('../hsm-init.js');
      print(await hsmStatus());
    });
}
