import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { errnoCode } from '../errno.js';

/**
 * SoftHSM2 token provisioning for `kms hsm init`, the quickstart and the test harness.
 *
 * Everything here is idempotent: a second run with the same arguments finds the token and
 * changes nothing. PINs are handed to `softhsm2-util` as arguments (that is the only way the
 * tool accepts them non-interactively) but never appear in a log line or an error message.
 */

const execFileAsync = promisify(execFile);

/** Sink for the few progress lines provisioning prints; defaults to stderr. */
export type ProvisionLogger = (message: string) => void;

const defaultLog: ProvisionLogger = (message) => {
  process.stderr.write(`${message}\n`);
};

/** Options for {@link provisionSoftHsmToken}. */
export interface ProvisionOptions {
  /** The service data dir (`KMS_DATA_DIR`); the config and tokens go under `<dataDir>/hsm`. */
  dataDir: string;
  /** Token label, at most 32 characters (PKCS#11 pads labels to 32 bytes). */
  tokenLabel: string;
  /** User PIN set on a newly initialised token (4–255 characters for SoftHSM2). */
  userPin: string;
  /** Security Officer PIN set on a newly initialised token. */
  soPin: string;
  /**
   * A SoftHSM2 config file the caller manages. When given, it is used as it is if it exists
   * (its `directories.tokendir` is honoured), or written from the template if it does not, and
   * `process.env.SOFTHSM2_CONF` is left alone: the caller decides what the process loads.
   */
  conf?: string;
  /** Where progress lines go (command lines are redacted). Defaults to stderr. */
  log?: ProvisionLogger;
}

/** What {@link provisionSoftHsmToken} did. */
export interface ProvisionResult {
  /** Absolute path of the SoftHSM2 config file in use. */
  confPath: string;
  /** Absolute path of the token directory that config points at. */
  tokenDir: string;
  /** True when this call initialised the token, false when it already existed. */
  created: boolean;
}

/**
 * The template shipped in `hsm-config/`; this copy is the fallback when the module runs from a
 * location without the repository layout (e.g. a bundled build), and must say the same thing.
 */
const BUILTIN_TEMPLATE = `directories.tokendir = {{TOKEN_DIR}}
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = false
`;

/** src/hsm/provision.ts → repository root is two levels up. */
const TEMPLATE_PATH = fileURLToPath(new URL('../../hsm-config/softhsm2.conf.template', import.meta.url));

async function readTemplate(): Promise<string> {
  try {
    return await fs.readFile(TEMPLATE_PATH, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return BUILTIN_TEMPLATE;
    throw error;
  }
}

/** Renders the SoftHSM2 config for a token dir (exported for tests and `kms hsm` diagnostics). */
export async function renderSoftHsmConf(tokenDir: string): Promise<string> {
  if (/[\r\n]/.test(tokenDir)) throw new Error('The SoftHSM2 token directory path must not contain line breaks.');
  const template = await readTemplate();
  return template.split('{{TOKEN_DIR}}').join(tokenDir);
}

/** Reads `directories.tokendir` out of an existing SoftHSM2 config. */
export function tokenDirFromConf(text: string): string | undefined {
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*directories\.tokendir\s*=\s*(.*?)\s*$/.exec(line);
    if (match?.[1]) return match[1];
  }
  return undefined;
}

/** One token as `softhsm2-util --show-slots` describes it. */
export interface SoftHsmSlot {
  slot: string;
  initialized: boolean;
  label: string;
}

/**
 * Parses `softhsm2-util --show-slots`. Each slot starts with `Slot <n>`; the token block holds
 * `Initialized: yes|no` and `Label: <label padded with spaces>`.
 */
export function parseShowSlots(output: string): SoftHsmSlot[] {
  const slots: SoftHsmSlot[] = [];
  let current: SoftHsmSlot | undefined;
  for (const rawLine of output.split(/\r?\n/)) {
    const slotMatch = /^Slot\s+(\S+)\s*$/.exec(rawLine);
    if (slotMatch?.[1]) {
      current = { slot: slotMatch[1], initialized: false, label: '' };
      slots.push(current);
      continue;
    }
    if (!current) continue;
    const line = rawLine.trim();
    const init = /^Initialized:\s*(\S+)/.exec(line);
    if (init?.[1]) {
      current.initialized = init[1] === 'yes';
      continue;
    }
    const label = /^Label:(.*)$/.exec(line);
    if (label) current.label = (label[1] ?? '').trim();
  }
  return slots;
}

/** Runs softhsm2-util without a shell; errors never carry the real argument list. */
async function softhsmUtil(args: readonly string[], confPath: string, redacted: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync('softhsm2-util', [...args], {
      env: { ...process.env, SOFTHSM2_CONF: confPath },
      maxBuffer: 16 * 1024 * 1024,
      timeout: 120_000,
    });
    return stdout;
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') {
      throw new Error(
        'softhsm2-util was not found on PATH. Install SoftHSM2 (Debian/Ubuntu: `apt-get install softhsm2 opensc`, ' +
          'or run `bash scripts/setup.sh`), or point KMS_PKCS11_MODULE at another PKCS#11 module and provision its token yourself.',
      );
    }
    // execFile's own message embeds the full command line, PINs included: never rethrow it.
    const stderr = readStringProp(error, 'stderr').trim();
    const stdout = readStringProp(error, 'stdout').trim();
    const detail = stderr || stdout || 'no output';
    throw new Error(`\`${redacted}\` failed: ${detail}`);
  }
}

/**
 * Serialises provisioning of one data dir across processes (e.g. `kms serve` and `kms worker`
 * containers starting together on one volume): two concurrent `--init-token --free` runs would
 * otherwise create two tokens with the same label.
 */
async function withDirLock<T>(lockPath: string, fn: () => Promise<T>): Promise<T> {
  const staleMs = 120_000;
  const deadline = Date.now() + 5 * 60_000;
  for (;;) {
    try {
      const handle = await fs.open(lockPath, 'wx', 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw error;
      const stat = await fs.stat(lockPath).catch(() => undefined);
      // A lock left behind by a crashed process is broken once it is clearly stale.
      if (stat && Date.now() - stat.mtimeMs > staleMs) {
        await fs.rm(lockPath, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`Timed out waiting for the HSM provisioning lock ${lockPath}.`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(lockPath, { force: true });
  }
}

/**
 * Makes sure a SoftHSM2 token labelled `tokenLabel` exists, creating the config, the token dir
 * and the token when they are missing.
 *
 * - writes `<dataDir>/hsm/softhsm2.conf` from `hsm-config/softhsm2.conf.template` (only when
 *   its content differs) pointing at `<dataDir>/hsm/tokens` (mode 0700);
 * - sets `process.env.SOFTHSM2_CONF` to it, because the PKCS#11 module reads that variable at
 *   `C_Initialize`, unless `opts.conf` was given;
 * - initialises the token with `softhsm2-util --init-token --free` only when
 *   `softhsm2-util --show-slots` lists no initialised token with that label.
 *
 * @returns the config path, the token dir and whether a token was created.
 */
export async function provisionSoftHsmToken(opts: ProvisionOptions): Promise<ProvisionResult> {
  const log = opts.log ?? defaultLog;
  const label = opts.tokenLabel;
  if (label.length === 0 || Buffer.byteLength(label, 'utf8') > 32) {
    throw new Error('The HSM token label must be 1 to 32 bytes long.');
  }
  if (label !== label.trim()) throw new Error('The HSM token label must not start or end with spaces.');
  for (const [name, pin] of [
    ['user PIN', opts.userPin],
    ['SO PIN', opts.soPin],
  ] as const) {
    if (pin.length < 4 || pin.length > 255) throw new Error(`The HSM ${name} must be 4 to 255 characters long.`);
  }

  const hsmDir = path.resolve(opts.dataDir, 'hsm');
  await fs.mkdir(hsmDir, { recursive: true, mode: 0o700 });

  let confPath: string;
  let tokenDir: string;
  if (opts.conf) {
    confPath = path.resolve(opts.conf);
    const existing = await fs.readFile(confPath, 'utf8').catch((error: unknown) => {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw error;
    });
    if (existing === undefined) {
      tokenDir = path.join(hsmDir, 'tokens');
      await fs.mkdir(path.dirname(confPath), { recursive: true });
      await writeIfChanged(confPath, await renderSoftHsmConf(tokenDir));
    } else {
      const fromConf = tokenDirFromConf(existing);
      if (!fromConf) throw new Error(`${confPath} has no directories.tokendir setting.`);
      tokenDir = path.resolve(path.dirname(confPath), fromConf);
    }
  } else {
    confPath = path.join(hsmDir, 'softhsm2.conf');
    tokenDir = path.join(hsmDir, 'tokens');
    await writeIfChanged(confPath, await renderSoftHsmConf(tokenDir));
  }
  // SoftHSM2 refuses to start when the token dir is missing; 0700 because token files are keys.
  await fs.mkdir(tokenDir, { recursive: true, mode: 0o700 });
  await fs.chmod(tokenDir, 0o700).catch(() => undefined);

  if (!opts.conf) process.env.SOFTHSM2_CONF = confPath;

  const hasToken = async (): Promise<boolean> => {
    const out = await softhsmUtil(['--show-slots'], confPath, 'softhsm2-util --show-slots');
    return parseShowSlots(out).some((s) => s.initialized && s.label === label);
  };

  const created = await withDirLock(path.join(hsmDir, '.provision.lock'), async () => {
    if (await hasToken()) return false;
    const redacted = `softhsm2-util --init-token --free --label ${JSON.stringify(label)} --so-pin ****** --pin ******`;
    log(`hsm: initialising SoftHSM2 token "${label}" in ${tokenDir}: ${redacted}`);
    await softhsmUtil(
      ['--init-token', '--free', '--label', label, '--so-pin', opts.soPin, '--pin', opts.userPin],
      confPath,
      redacted,
    );
    if (!(await hasToken())) {
      throw new Error(`softhsm2-util reported success but no initialised token "${label}" is listed in ${tokenDir}.`);
    }
    return true;
  });

  return { confPath, tokenDir, created };
}

/** Writes `content` only when the file is missing or different, so reruns touch nothing. */
async function writeIfChanged(file: string, content: string): Promise<void> {
  const current = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (current === content) return;
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(tmp, content, { mode: 0o600 });
  await fs.rename(tmp, file);
}

/** PINs for the service's token. */
export interface HsmPins {
  userPin: string;
  soPin: string;
}

const PIN_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';

/** A random PIN of `length` characters from an unambiguous alphanumeric alphabet. */
function randomPin(length = 16): string {
  let pin = '';
  // Rejection sampling keeps every character uniformly likely.
  const limit = 256 - (256 % PIN_ALPHABET.length);
  while (pin.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < limit && pin.length < length) pin += PIN_ALPHABET[byte % PIN_ALPHABET.length];
    }
  }
  return pin;
}

/** Strips one trailing newline (files written with `echo` have one); a PIN never ends in one. */
function pinFromFileText(text: string, file: string): string {
  const pin = text.replace(/\r?\n$/, '');
  if (pin.length === 0) throw new Error(`The PIN file ${file} is empty.`);
  return pin;
}

async function readNamedPinFile(file: string, log: ProvisionLogger): Promise<string> {
  const stat = await fs.stat(file);
  // Files named by the operator (Docker/Kubernetes secrets are often 0444) only get a warning.
  if ((stat.mode & 0o077) !== 0) {
    log(`hsm: warning: PIN file ${file} is accessible by group or others (mode ${(stat.mode & 0o777).toString(8)}); chmod 600 it.`);
  }
  return pinFromFileText(await fs.readFile(file, 'utf8'), file);
}

/**
 * Reads the PIN file the service owns, creating it (0600) on first use. Creation goes through
 * a temp file and `link()`, which fails if the name exists, so two processes starting at once
 * agree on one PIN and neither ever reads a half-written file.
 */
async function readOrCreateOwnPinFile(file: string): Promise<string> {
  try {
    const handle = await fs.open(file, fsConstants.O_RDONLY);
    try {
      const stat = await handle.stat();
      if ((stat.mode & 0o077) !== 0) {
        // Our own secret with loose permissions means someone changed them: refuse, like ssh does.
        throw new Error(
          `The PIN file ${file} is accessible by group or others (mode ${(stat.mode & 0o777).toString(8)}); run \`chmod 600 ${file}\`.`,
        );
      }
      return pinFromFileText(await handle.readFile('utf8'), file);
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error;
  }
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(tmp, `${randomPin()}\n`, { mode: 0o600, flag: 'wx' });
  try {
    await fs.chmod(tmp, 0o600);
    await fs.link(tmp, file);
  } catch (error) {
    if (errnoCode(error) !== 'EEXIST') throw error;
  } finally {
    await fs.rm(tmp, { force: true });
  }
  return readOrCreateOwnPinFile(file);
}

/**
 * The token PINs, from (in order of precedence, per PIN):
 * 1. `KMS_HSM_PIN` / `KMS_HSM_SO_PIN`;
 * 2. the files named by `KMS_HSM_PIN_FILE` / `KMS_HSM_SO_PIN_FILE` (a warning is logged when
 *    such a file is group/world readable);
 * 3. `<dataDir>/hsm/user.pin` / `<dataDir>/hsm/so.pin`, created with random 16-character values
 *    and mode 0600 on first use; an existing one that is group/world readable is refused.
 *
 * @param env the environment to read (defaults to `process.env`).
 * @param log where warnings go (defaults to stderr).
 */
export async function loadOrCreatePins(
  dataDir: string,
  env: NodeJS.ProcessEnv = process.env,
  log: ProvisionLogger = defaultLog,
): Promise<HsmPins> {
  const hsmDir = path.resolve(dataDir, 'hsm');
  const resolvePin = async (envName: string, fileEnvName: string, ownFile: string): Promise<string> => {
    const direct = env[envName];
    if (direct) return direct;
    const named = env[fileEnvName];
    if (named) return readNamedPinFile(path.resolve(named), log);
    await fs.mkdir(hsmDir, { recursive: true, mode: 0o700 });
    return readOrCreateOwnPinFile(path.join(hsmDir, ownFile));
  };
  const userPin = await resolvePin('KMS_HSM_PIN', 'KMS_HSM_PIN_FILE', 'user.pin');
  const soPin = await resolvePin('KMS_HSM_SO_PIN', 'KMS_HSM_SO_PIN_FILE', 'so.pin');
  return { userPin, soPin };
}

function readStringProp(value: unknown, key: string): string {
  if (typeof value === 'object' && value !== null && key in value) {
    const prop = (value as Record<string, unknown>)[key];
    if (typeof prop === 'string') return prop;
    if (Buffer.isBuffer(prop)) return prop.toString('utf8');
  }
  return '';
}
