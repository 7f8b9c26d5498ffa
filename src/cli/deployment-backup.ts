/**
 * `kms backup --out DIR` / `kms restore --from DIR` (issue 19): everything a deployment needs to
 * decrypt what it ever encrypted, in one directory (0700, files 0600):
 *
 * - `database.dump`: `pg_dump --format=custom` of DATABASE_URL (or, for the quickstart's embedded
 *   store, `pglite/`: a copy of its files, taken only while the rig is stopped);
 * - `token/`: the SoftHSM2 token directory (`directories.tokendir` of SOFTHSM2_CONF, default
 *   `<data dir>/hsm/softhsm2.conf`): every HSM-tier key version, the HsmEncryptedDatabase master
 *   key, the SOFTWARE tier's root key. A network HSM's tokens are not files: its vendor's backup
 *   (README, "Operations: backup and restore") takes their place and `--no-token` skips this part;
 * - `secrets/`: the PIN files and the data dir's secret files (credentials.json,
 *   local-services.secret) that exist — PINs given in the environment are not files and are not
 *   copied (the manifest says so);
 * - `manifest.json`: format, package version, migration level, time, and the SHA-256 of every
 *   file, checked by restore before it touches anything.
 *
 * Order matters for a live backup: the database is dumped first, the token copied second. A
 * version committed after the dump has no row in the backup, and its object in the copied token
 * is an orphan the reconciler destroys; the other order would leave rows whose object is missing.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import type { KmsConfig } from '../config.js';
import { renderSoftHsmConf, tokenDirFromConf } from '../hsm/provision.js';
import { takeExclusiveLease } from '../store/deployment-lease.js';
import { assertRigStopped } from './rig-snapshots.js';

const execFileAsync = promisify(execFile);

export const BACKUP_FORMAT = 'hsm-kms-backup/1';

export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  createdAt: string;
  kmsVersion: string;
  /** The last migration applied (schema_migrations), and all of them. */
  migrationLevel: string | null;
  migrations: string[];
  database: { kind: 'postgres'; file: string; serverVersion: string; pgDumpVersion: string } | { kind: 'embedded'; dir: string };
  /** undefined: `--no-token` (a network HSM: its vendor's backup holds the keys). */
  token: { dir: string; tokenLabel: string; pkcs11Module: string } | undefined;
  /** Secret files, by their place under the data dir (restored there). */
  secrets: string[];
  /** PINs that came from the environment (not files): keep them in your secret store. */
  pinsFromEnvironment: string[];
  /** SHA-256 (hex) of every file, by its path inside the backup. */
  files: Record<string, string>;
}

/** package.json's version (two folders up from src/cli/ and dist/cli/ alike). */
async function packageVersion(): Promise<string> {
  const text = await readFile(new URL('../../package.json', import.meta.url), 'utf8').catch(() => '{}');
  return (JSON.parse(text) as { version?: string }).version ?? 'unknown';
}

/** Secret files of a data dir, by their place under it. */
const DATA_DIR_SECRETS = ['hsm/user.pin', 'hsm/so.pin', 'credentials.json', 'local-services.secret'];

/** The SoftHSM2 config in use: SOFTHSM2_CONF, else the data dir's. */
function softHsmConfPath(config: KmsConfig, env: NodeJS.ProcessEnv): string {
  return env.SOFTHSM2_CONF ? path.resolve(env.SOFTHSM2_CONF) : path.join(config.dataDir, 'hsm', 'softhsm2.conf');
}

async function tokenDirOf(confPath: string): Promise<string> {
  const text = await readFile(confPath, 'utf8').catch(() => {
    throw new Error(`no SoftHSM2 config at ${confPath} (set SOFTHSM2_CONF or KMS_DATA_DIR; with a network HSM pass --no-token).`);
  });
  const dir = tokenDirFromConf(text);
  if (!dir) throw new Error(`${confPath} has no directories.tokendir setting.`);
  return path.resolve(path.dirname(confPath), dir);
}

/** libpq's environment for a URL, its password out of the argument list (ps shows arguments). */
function libpqTarget(url: string): { dbname: string; env: NodeJS.ProcessEnv } {
  const parsed = new URL(url);
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (parsed.password) env.PGPASSWORD = decodeURIComponent(parsed.password);
  parsed.password = '';
  return { dbname: parsed.toString(), env };
}

async function sha256File(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

async function listFiles(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(full, base)));
    else if (entry.isFile()) out.push(path.relative(base, full));
  }
  return out.sort();
}

/**
 * Copies a directory tree file by file, then re-copies any file that changed while it was read
 * (size or mtime differs from the source) until a pass finds none: SoftHSM2 rewrites an object
 * file when another process changes it, so a live token is copied until it holds still.
 */
async function copyTreeSettled(from: string, to: string, skip: (name: string) => boolean = () => false): Promise<string[]> {
  const files = (await listFiles(from)).filter((f) => !skip(path.basename(f)));
  let pending = files;
  for (let pass = 0; pending.length > 0; pass++) {
    if (pass === 5) throw new Error(`${from} kept changing while it was copied (${pending.length} files): try again, or stop the deployment.`);
    for (const file of pending) {
      await mkdir(path.dirname(path.join(to, file)), { recursive: true, mode: 0o700 });
      await copyFile(path.join(from, file), path.join(to, file));
      await chmod(path.join(to, file), 0o600);
    }
    const changed: string[] = [];
    for (const file of pending) {
      const [a, b] = await Promise.all([stat(path.join(from, file)).catch(() => undefined), stat(path.join(to, file))]);
      if (a && a.size !== b.size) changed.push(file);
      else if (a && (await sha256File(path.join(from, file))) !== (await sha256File(path.join(to, file)))) changed.push(file);
    }
    pending = changed;
  }
  return files;
}

async function migrationsOf(client: pg.Client): Promise<string[]> {
  const table = await client.query<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t");
  if (!table.rows[0]?.t) return [];
  return (await client.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY version')).rows.map((r) => r.version);
}

export interface BackupOptions {
  out: string;
  /** Skip the token directory (a network HSM: the vendor's backup holds the keys). */
  token: boolean;
  env?: NodeJS.ProcessEnv;
}

export async function backupDeployment(config: KmsConfig, options: BackupOptions): Promise<BackupManifest> {
  const env = options.env ?? process.env;
  const out = path.resolve(options.out);
  const existing = await readdir(out).catch(() => undefined);
  if (existing && existing.length > 0) throw new Error(`${out} is not empty: back up into a new directory.`);
  await mkdir(out, { recursive: true, mode: 0o700 });
  await chmod(out, 0o700);
  const partial = path.join(out, '.partial');
  await writeFile(partial, '', { mode: 0o600 });
  try {
    let database: BackupManifest['database'];
    let migrations: string[];
    if (config.databaseUrl) {
      const client = new pg.Client({ connectionString: config.databaseUrl, application_name: 'hsm-kms backup' });
      client.on('error', () => undefined);
      await client.connect();
      let serverVersion: string;
      try {
        migrations = await migrationsOf(client);
        serverVersion = (await client.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ?? '';
      } finally {
        await client.end().catch(() => undefined);
      }
      const target = libpqTarget(config.databaseUrl);
      const dumpFile = path.join(out, 'database.dump');
      // Custom format: compressed, restorable table by table, one consistent snapshot of the database.
      await execFileAsync('pg_dump', ['--format=custom', '--no-owner', '--no-privileges', `--file=${dumpFile}`, `--dbname=${target.dbname}`], { env: target.env, maxBuffer: 16 << 20 });
      await chmod(dumpFile, 0o600);
      const pgDumpVersion = (await execFileAsync('pg_dump', ['--version'])).stdout.trim();
      database = { kind: 'postgres', file: 'database.dump', serverVersion, pgDumpVersion };
    } else {
      // The embedded store's files are consistent only while nothing writes them.
      await assertRigStopped(config.dataDir);
      const pglite = path.join(config.dataDir, 'pglite');
      if (!(await stat(pglite).catch(() => undefined))) throw new Error(`no DATABASE_URL and no embedded store at ${pglite}: nothing to back up.`);
      await copyTreeSettled(pglite, path.join(out, 'pglite'));
      migrations = [];
      database = { kind: 'embedded', dir: 'pglite' };
    }

    let token: BackupManifest['token'];
    if (options.token) {
      const tokenDir = await tokenDirOf(softHsmConfPath(config, env));
      // SoftHSM2's lock files belong to the processes that have it open.
      await copyTreeSettled(tokenDir, path.join(out, 'token'), (name) => name.endsWith('.lock'));
      token = { dir: 'token', tokenLabel: config.hsm.tokenLabel, pkcs11Module: config.hsm.modulePath };
    }

    const secrets: string[] = [];
    const pinsFromEnvironment: string[] = [];
    for (const [variable, fileVariable, own] of [
      ['KMS_HSM_PIN', 'KMS_HSM_PIN_FILE', 'hsm/user.pin'],
      ['KMS_HSM_SO_PIN', 'KMS_HSM_SO_PIN_FILE', 'hsm/so.pin'],
    ] as const) {
      if (env[variable]) pinsFromEnvironment.push(variable);
      else if (env[fileVariable]) await copySecret(path.resolve(env[fileVariable]!), own);
    }
    for (const relative of DATA_DIR_SECRETS) {
      if (secrets.includes(relative)) continue;
      const source = path.join(config.dataDir, relative);
      if (await stat(source).catch(() => undefined)) await copySecret(source, relative);
    }
    async function copySecret(source: string, relative: string): Promise<void> {
      const target = path.join(out, 'secrets', relative);
      await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
      await copyFile(source, target);
      await chmod(target, 0o600);
      secrets.push(relative);
    }

    const files: Record<string, string> = {};
    for (const file of await listFiles(out)) if (file !== '.partial') files[file] = await sha256File(path.join(out, file));
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      createdAt: new Date().toISOString(),
      kmsVersion: await packageVersion(),
      migrationLevel: migrations.at(-1) ?? null,
      migrations,
      database,
      token,
      secrets,
      pinsFromEnvironment,
      files,
    };
    await writeFile(path.join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
    await rm(partial);
    return manifest;
  } catch (error) {
    // Never leave something that looks like a backup: the manifest is written last, and a failed
    // run removes what it wrote.
    await rm(out, { recursive: true, force: true });
    throw error;
  }
}

/** Reads the manifest and checks every file's checksum (and that no file is missing or extra). */
export async function verifyBackup(from: string): Promise<BackupManifest> {
  const dir = path.resolve(from);
  const text = await readFile(path.join(dir, 'manifest.json'), 'utf8').catch(() => {
    throw new Error(`${dir} has no manifest.json: not a finished \`kms backup\`.`);
  });
  const manifest = JSON.parse(text) as BackupManifest;
  if (manifest.format !== BACKUP_FORMAT) throw new Error(`${dir}: unknown backup format ${JSON.stringify(manifest.format)} (this kms reads ${BACKUP_FORMAT}).`);
  const present = (await listFiles(dir)).filter((f) => f !== 'manifest.json');
  for (const file of present) if (!(file in manifest.files)) throw new Error(`${dir}: ${file} is not in the manifest.`);
  for (const [file, sum] of Object.entries(manifest.files)) {
    const actual = await sha256File(path.join(dir, file)).catch(() => undefined);
    if (actual === undefined) throw new Error(`${dir}: ${file} is missing.`);
    if (actual !== sum) throw new Error(`${dir}: ${file} does not match its checksum: the backup is damaged.`);
  }
  return manifest;
}

export interface RestoreOptions {
  from: string;
  /** Overwrite a database that has tables and a token dir that has tokens. */
  replace: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface RestoreResult {
  manifest: BackupManifest;
  tokenDir: string | undefined;
  softHsmConf: string | undefined;
}

/**
 * Restores into DATABASE_URL (an existing, preferably new, database) and the data dir. Refused
 * while any `kms serve` or `kms worker` holds the deployment lease of that database (see
 * store/deployment-lease.ts), and while an embedded rig of the data dir runs.
 */
export async function restoreDeployment(config: KmsConfig, options: RestoreOptions): Promise<RestoreResult> {
  const env = options.env ?? process.env;
  const from = path.resolve(options.from);
  const manifest = await verifyBackup(from);
  await assertRigStopped(config.dataDir);

  let client: pg.Client | undefined;
  try {
    if (manifest.database.kind === 'postgres') {
      if (!config.databaseUrl) throw new Error('the backup holds a PostgreSQL dump: set DATABASE_URL to the (new, empty) database to restore into.');
      client = new pg.Client({ connectionString: config.databaseUrl, application_name: 'hsm-kms restore' });
      client.on('error', () => undefined);
      await client.connect();
      // Kept until the restore ends: no kms serve/worker starts on this database meanwhile.
      const lease = await takeExclusiveLease(client);
      if (!lease.taken) {
        const who = lease.holders.map((h) => `${h.applicationName}${h.clientAddress ? ` at ${h.clientAddress}` : ''}`).join(', ');
        throw new Error(`refused: the deployment is running on this database (${who || 'a kms serve or kms worker'}); stop every kms serve and kms worker first.`);
      }
      if ((await migrationsOf(client)).length > 0 && !options.replace) {
        throw new Error('refused: the target database already holds an hsm-kms schema; restore into a new database (createdb), or pass --replace to overwrite it.');
      }
    } else if (config.databaseUrl) {
      throw new Error('the backup holds an embedded store (pglite): unset DATABASE_URL to restore it into the data dir.');
    }

    let tokenDir: string | undefined;
    let softHsmConf: string | undefined;
    if (manifest.token) {
      softHsmConf = softHsmConfPath(config, env);
      const confExists = Boolean(await stat(softHsmConf).catch(() => undefined));
      tokenDir = confExists ? await tokenDirOf(softHsmConf) : path.join(config.dataDir, 'hsm', 'tokens');
      const present = await readdir(tokenDir).catch((): string[] => []);
      if (present.length > 0 && !options.replace) throw new Error(`refused: the token directory ${tokenDir} is not empty; restore into a new data dir, or pass --replace to overwrite it.`);
    }
    for (const relative of manifest.secrets) {
      const target = path.join(config.dataDir, relative);
      if ((await stat(target).catch(() => undefined)) && !options.replace) throw new Error(`refused: ${target} exists; restore into a new data dir, or pass --replace.`);
    }

    // Checks done: now write.
    await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
    if (manifest.database.kind === 'postgres') {
      const target = libpqTarget(config.databaseUrl!);
      const args = ['--no-owner', '--no-privileges', '--exit-on-error', '--single-transaction', `--dbname=${target.dbname}`];
      if (options.replace) args.push('--clean', '--if-exists');
      await execFileAsync('pg_restore', [...args, path.join(from, manifest.database.file)], { env: target.env, maxBuffer: 16 << 20 });
    } else {
      const pglite = path.join(config.dataDir, 'pglite');
      await rm(pglite, { recursive: true, force: true });
      await copyTreeSettled(path.join(from, manifest.database.dir), pglite);
    }
    if (manifest.token && tokenDir && softHsmConf) {
      await rm(tokenDir, { recursive: true, force: true });
      await copyTreeSettled(path.join(from, manifest.token.dir), tokenDir);
      await chmod(tokenDir, 0o700);
      if (!(await stat(softHsmConf).catch(() => undefined))) {
        await mkdir(path.dirname(softHsmConf), { recursive: true, mode: 0o700 });
        await writeFile(softHsmConf, await renderSoftHsmConf(tokenDir), { mode: 0o600 });
      }
    }
    for (const relative of manifest.secrets) {
      const target = path.join(config.dataDir, relative);
      await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
      await copyFile(path.join(from, 'secrets', relative), target);
      await chmod(target, 0o600);
    }
    return { manifest, tokenDir, softHsmConf };
  } finally {
    await client?.end().catch(() => undefined);
  }
}
