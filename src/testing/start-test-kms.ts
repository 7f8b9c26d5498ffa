/**
 * `startTestKms()` (`hsm-kms/testing`, issue 18): a throwaway hsm-kms for a test suite. It runs
 * the real thing — `kms quickstart` in a child process: a SoftHSM2 token and an embedded
 * Postgres in a temp dir, a private redis-server (or REDIS_URL), the API on a free port — and
 * answers once it serves, with the admin credentials. `stop()` stops all of it (the quickstart
 * stops its database and redis on SIGINT) and removes the temp dir: nothing keeps running and
 * no handle stays open in the caller's process.
 *
 * Only node builtins are loaded here (ioredis only to clean a shared REDIS_URL), so importing it
 * costs the test suite nothing.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export interface StartTestKmsOptions {
  /**
   * A seed applied before `startTestKms` resolves (docs/seeding.md): the path of a YAML or JSON
   * file, or the document itself (then `material.file` paths are relative to the temp dir).
   */
  seed?: string | Record<string, unknown>;
  /** A Redis to use instead of a private redis-server (default: process.env.REDIS_URL; `''`: always a private one). */
  redisUrl?: string;
  /** Keep the state in this folder (a second start reuses it; `stop()` leaves it). Default: a new temp dir, removed by `stop()`. */
  dataDir?: string;
  /** More environment for the server (KMS_CLOCK=manual, KMS_BOOTSTRAP_ACCESS_KEY_ID …). */
  env?: Record<string, string>;
  /** How long the start may take (default 120 s: a first SoftHSM2 token and database take a few seconds). */
  startTimeoutMs?: number;
}

export interface TestKms {
  /** `127.0.0.1:<port>`: the SDKs' `endpoint` (with `protocol: 'http'`). */
  endpoint: string;
  accessKeyId: string;
  accessKeySecret: string;
  /** The region the SDKs should name (`cn-hangzhou` unless env.KMS_REGION says otherwise). */
  regionId: string;
  /** The instances the quickstart made: `DKMSInstanceId` for HSM and SOFTWARE keys. */
  hsmInstanceId: string;
  softwareInstanceId: string;
  /** Where the token, database and credentials live. */
  dataDir: string;
  /** Everything the server wrote (stdout and stderr), for a failing test's message. */
  output(): string;
  /** Stops the server, its database and redis; removes the temp dir it made. Safe to call twice. */
  stop(): Promise<void>;
}

/** The package root: src/testing/ and dist/testing/ are both two folders down. */
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Environment the caller's shell may carry that must not reach a throwaway rig. */
const INHERITED_SETTINGS = ['DATABASE_URL', 'REDIS_URL', 'SOFTHSM2_CONF', 'KMS_HSM_PIN', 'KMS_HSM_SO_PIN', 'KMS_DB_POOL_SIZE', 'KMS_PORT', 'KMS_HOST', 'KMS_DATA_DIR', 'KMS_SEED_FILE', 'KMS_QUEUE_PREFIX'];

const READY = /hsm-kms is running\.[\s\S]*?Endpoint\s+(\S+:\d+)/;

export async function startTestKms(options: StartTestKmsOptions = {}): Promise<TestKms> {
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'hsm-kms-test-')));
  const redisUrl = options.redisUrl ?? process.env.REDIS_URL;
  // On a shared Redis, this rig's queues and clock live under a prefix of their own.
  const queuePrefix = redisUrl ? `hsm-kms-test-${randomBytes(6).toString('hex')}` : undefined;
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of INHERITED_SETTINGS) delete env[name];
  Object.assign(env, {
    KMS_DATA_DIR: dataDir,
    KMS_HOST: '127.0.0.1',
    KMS_PORT: '0',
    KMS_LOG_LEVEL: 'warn',
    ...(redisUrl ? { REDIS_URL: redisUrl, KMS_QUEUE_PREFIX: queuePrefix } : {}),
    ...(options.seed !== undefined ? { KMS_SEED_FILE: await seedFile(dataDir, options.seed) } : {}),
    ...options.env,
  });

  if (ownsDataDir) await copyDatabaseTemplate(dataDir);
  const child = spawn(process.execPath, [path.join(packageRoot, 'bin', 'kms.mjs'), 'quickstart'], { cwd: dataDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (output += d.toString('utf8')));
  // A test process that exits without stop() must not leave the server behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await stopChild(child);
      process.removeListener('exit', killOnExit);
      if (queuePrefix && redisUrl) await deleteQueues(redisUrl, queuePrefix);
      if (ownsDataDir) await rm(dataDir, { recursive: true, force: true });
    })());

  try {
    const endpoint = await ready(child, () => output, options.startTimeoutMs ?? 120_000);
    const credentials = JSON.parse(await readFile(path.join(dataDir, 'credentials.json'), 'utf8')) as { AccessKeyId: string; AccessKeySecret: string };
    return {
      endpoint,
      accessKeyId: credentials.AccessKeyId,
      accessKeySecret: credentials.AccessKeySecret,
      regionId: options.env?.KMS_REGION ?? process.env.KMS_REGION ?? 'cn-hangzhou',
      hsmInstanceId: /HSM instance\s+(kst-\S+)/.exec(output)?.[1] ?? '',
      softwareInstanceId: /SW instance\s+(kst-\S+)/.exec(output)?.[1] ?? '',
      dataDir,
      output: () => output,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * A new embedded database spends most of a rig's start in initdb (~12 s of 18 measured under
 * load, ~3 s to open an existing one). So the first start on a machine makes an empty,
 * initialised PGlite cluster once, under node_modules/.cache/hsm-kms/, and every rig starts from
 * a copy (the quickstart then migrates it; the password lives in our wire front, not in the
 * cluster). Anything failing here only costs the time: the quickstart initialises it itself.
 */
async function copyDatabaseTemplate(dataDir: string): Promise<void> {
  try {
    const template = await databaseTemplate();
    await cp(template, path.join(dataDir, 'pglite'), { recursive: true });
  } catch {
    await rm(path.join(dataDir, 'pglite'), { recursive: true, force: true });
  }
}

async function databaseTemplate(): Promise<string> {
  const manifest = JSON.parse(await readFile(path.join(packageRoot, 'node_modules', '@electric-sql', 'pglite', 'package.json'), 'utf8')) as { version: string };
  const template = path.join(packageRoot, 'node_modules', '.cache', 'hsm-kms', `pglite-${manifest.version}-cluster`);
  if (await stat(path.join(template, 'PG_VERSION')).then(() => true, () => false)) return template;
  // Made beside it and renamed into place: concurrent first starts never see half a cluster.
  const partial = `${template}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await mkdir(path.dirname(partial), { recursive: true });
  try {
    const script = `import { PGlite } from '@electric-sql/pglite'; const db = await PGlite.create(${JSON.stringify(partial)}); await db.close();`;
    await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: packageRoot, timeout: 120_000 });
    await rename(partial, template).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error; // another start made it first
    });
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
  return template;
}

async function seedFile(dataDir: string, seed: NonNullable<StartTestKmsOptions['seed']>): Promise<string> {
  if (typeof seed === 'string') return path.resolve(seed);
  const file = path.join(dataDir, 'seed.json');
  await writeFile(file, JSON.stringify(seed), { mode: 0o600 });
  return file;
}

/** Resolves with the endpoint once the banner is out; rejects if the server exits or the deadline passes. */
function ready(child: ChildProcess, output: () => string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const done = (settle: () => void) => {
      clearTimeout(timer);
      child.stdout?.off('data', check);
      child.off('exit', exited);
      settle();
    };
    const check = () => {
      const endpoint = READY.exec(output())?.[1];
      if (endpoint) done(() => resolve(endpoint));
    };
    const exited = (code: number | null) => done(() => reject(new Error(`hsm-kms exited (${code}) before serving:\n${output()}`)));
    const timer = setTimeout(() => done(() => reject(new Error(`hsm-kms did not start within ${timeoutMs} ms:\n${output()}`))), timeoutMs);
    child.stdout?.on('data', check);
    child.once('exit', exited);
    check();
  });
}

/** SIGINT (the quickstart stops its API, workers, database and redis), then waits for the exit; SIGKILL after 30 s. */
function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return closeStreams(child);
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(closeStreams(child));
    });
    child.kill('SIGINT');
  });
}

async function closeStreams(child: ChildProcess): Promise<void> {
  child.stdout?.destroy();
  child.stderr?.destroy();
}

/** The rig's keys on a shared Redis (queues, shared clock), so a suite leaves that Redis as it found it. */
async function deleteQueues(redisUrl: string, prefix: string): Promise<void> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2, lazyConnect: true });
  try {
    await redis.connect();
    for await (const keys of redis.scanStream({ match: `${prefix}:*`, count: 20_000 }) as AsyncIterable<string[]>) {
      if (keys.length > 0) await redis.del(...keys);
    }
  } finally {
    redis.disconnect();
  }
}
