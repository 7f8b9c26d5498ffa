import type { Command } from 'commander';
import { loadConfig } from '../../config.js';
import { Pkcs11Hsm } from '../../hsm/pkcs11/pkcs11-hsm.js';
import { loadOrCreatePins, provisionSoftHsmToken } from '../../hsm/provision.js';
import { useDataDirSoftHsmConf } from '../../kms.js';
import { print } from '../output.js';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/**
 * Provisions the token (SoftHSM2: config, token dir, token and PINs; idempotent) and creates
 * the service's own keys (root key, import-token MAC key) once, so that several processes
 * starting later never race to create them.
 */
export async function initHsm(options: { quiet?: boolean } = {}) {
  const config = loadConfig();
  const pins = await loadOrCreatePins(config.dataDir);
  let provisioned: { confPath: string; tokenDir: string; created: boolean } | undefined;
  if (config.hsm.modulePath === SOFTHSM_MODULE || config.hsm.modulePath.includes('softhsm')) {
    provisioned = await provisionSoftHsmToken({
      dataDir: config.dataDir,
      tokenLabel: config.hsm.tokenLabel,
      userPin: pins.userPin,
      soPin: pins.soPin,
      ...(process.env.SOFTHSM2_CONF ? { conf: process.env.SOFTHSM2_CONF } : {}),
      ...(options.quiet ? { log: () => undefined } : {}),
    });
  }
  const hsm = await Pkcs11Hsm.open({
    modulePath: config.hsm.modulePath,
    tokenLabel: config.hsm.tokenLabel,
    pin: pins.userPin,
    sessions: 1,
    importStrict: config.hsm.importStrict,
  });
  const info = hsm.info();
  await hsm.close();
  return { tokenLabel: info.tokenLabel, module: info.modulePath, ...provisioned, capabilities: info.capabilities };
}

export function registerHsmCommands(program: Command): void {
  const hsm = program.command('hsm').description('the HSM token');
  hsm
    .command('init')
    .description('provision the SoftHSM2 token under the data dir (idempotent) and the service keys')
    .action(async () => print(await initHsm()));
  hsm
    .command('status')
    .description('open the token and print what the capability probe found')
    .action(async () => {
      const config = loadConfig();
      useDataDirSoftHsmConf(config);
      const pins = await loadOrCreatePins(config.dataDir);
      const opened = await Pkcs11Hsm.open({
        modulePath: config.hsm.modulePath,
        tokenLabel: config.hsm.tokenLabel,
        pin: pins.userPin,
        sessions: 1,
        importStrict: config.hsm.importStrict,
      });
      print(opened.info());
      await opened.close();
    });
}
