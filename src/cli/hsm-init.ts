import { loadConfig } from '../config.js';
import { ensureMasterWrappingKey } from '../hsm/pkcs11/master-key.js';
import { Pkcs11Hsm } from '../hsm/pkcs11/pkcs11-hsm.js';
import { loadOrCreatePins, provisionSoftHsmToken } from '../hsm/provision.js';
import { useDataDirSoftHsmConf } from '../kms.js';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/**
 * `kms hsm init` (and the quickstart's first step): provisions the token (SoftHSM2: config,
 * token dir, token and PINs; idempotent) and creates the service's own keys (root key,
 * import-token MAC key) once, so that several processes starting later never race to create them.
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
  // HsmEncryptedDatabase's master wrapping key: CKA_TRUSTED needs the SO, so it is made here
  // (idempotent), before this process logs in as the user below.
  const masterWrappingKey = await ensureMasterWrappingKey({
    modulePath: config.hsm.modulePath,
    tokenLabel: config.hsm.tokenLabel,
    userPin: pins.userPin,
    soPin: pins.soPin,
  });
  const hsm = await Pkcs11Hsm.open({
    modulePath: config.hsm.modulePath,
    tokenLabel: config.hsm.tokenLabel,
    pin: pins.userPin,
    sessions: 1,
    importStrict: config.hsm.importStrict,
  });
  const info = hsm.info();
  // The audit trail's digest signing key (hsm-kms:audit-digest, non-extractable): made here, or at first start.
  await hsm.auditDigestPublicKeys().finally(() => hsm.close());
  return {
    tokenLabel: info.tokenLabel,
    module: info.modulePath,
    ...provisioned,
    masterWrappingKey: masterWrappingKey.created ? 'created' : 'present',
    capabilities: info.capabilities,
  };
}

/**
 * `kms hsm status`: opens the token `kms hsm init` provisioned — same data dir, same
 * SOFTHSM2_CONF default (`<data dir>/hsm/softhsm2.conf`), same PIN files — and returns what the
 * capability probe found. Creates nothing.
 * @throws Error naming the data dir when it holds no provisioned token.
 */
export async function hsmStatus() {
  const config = loadConfig();
  useDataDirSoftHsmConf(config);
  const isSoftHsm = config.hsm.modulePath === SOFTHSM_MODULE || config.hsm.modulePath.includes('softhsm');
  if (isSoftHsm && !process.env.SOFTHSM2_CONF) {
    throw new Error(`no SoftHSM2 token under ${config.dataDir} (no hsm/softhsm2.conf): run \`kms hsm init\` or the quickstart first, or set KMS_DATA_DIR / SOFTHSM2_CONF.`);
  }
  const pins = await loadOrCreatePins(config.dataDir);
  const opened = await Pkcs11Hsm.open({
    modulePath: config.hsm.modulePath,
    tokenLabel: config.hsm.tokenLabel,
    pin: pins.userPin,
    sessions: 1,
    importStrict: config.hsm.importStrict,
  });
  try {
    return { dataDir: config.dataDir, softhsm2Conf: process.env.SOFTHSM2_CONF, ...opened.info() };
  } finally {
    await opened.close();
  }
}
