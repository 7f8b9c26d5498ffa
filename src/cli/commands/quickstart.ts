import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Command } from 'commander';
import type { KmsConfig } from '../../config.js';
import { type LocalRuntime, EMBEDDED_DB_POOL_SIZE, runtimeFile } from '../local-kms.js';

interface QuickstartFlags {
  port?: string;
  host?: string;
  dataDir?: string;
}

/**
 * `npm run quickstart`: token under .kms/, embedded Postgres (PGlite) unless DATABASE_URL is
 * set, a private redis-server unless REDIS_URL is set, migrations, one HSM and one SOFTWARE
 * instance (`hsm-default`, `software-default`), the API on 127.0.0.1:8080. One line per step
 * with its time on stderr, the banner on stdout. Ctrl-C stops it all; a second run reuses the state.
 */
export function register(program: Command): void {
  program
    .command('quickstart')
    .description('start a complete local KMS (token, database, redis, API, workers) under the data dir')
    .option('--port <port>', 'API port (env KMS_PORT; default 8080; 0 picks a free one)')
    .option('--host <address>', 'API address (env KMS_HOST; default 127.0.0.1)')
    .option('--data-dir <dir>', 'token, credentials, database and Redis data (env KMS_DATA_DIR; default .kms)')
    .action(async (flags: QuickstartFlags) => {
      // Flags win over the environment; everything below (and every child) reads the environment.
      if (flags.port !== undefined) process.env.KMS_PORT = flags.port;
      if (flags.host !== undefined) process.env.KMS_HOST = flags.host;
      if (flags.dataDir !== undefined) process.env.KMS_DATA_DIR = flags.dataDir;
      await quickstart();
    });
}

async function quickstart(): Promise<void> {
  const { loadConfig } = await import('../../config.js');
  const base = loadConfig();
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  };
  const step = stepLogger();
  try {
    // Before anything is provisioned or loaded: a taken port is the commonest failure, and the
    // cheapest to report; a bad pinned credential is next.
    await step(`port ${base.host}:${base.port}`, async () => {
      await assertPortFree(base.host, base.port);
      return base.port === 0 ? 'any free port' : 'free';
    });
    const { pinnedBootstrapKey } = await import('../../services/bootstrap.js');
    const pinned = pinnedBootstrapKey();

    const hsm = await step('HSM token', async () => {
      const { initHsm } = await import('../hsm-init.js');
      const result = await initHsm({ quiet: true });
      return { value: result, note: `"${result.tokenLabel}" ${result.created ? 'created' : 'opened'} under ${path.join(base.dataDir, 'hsm')}` };
    });
    // The embedded Postgres and the private Redis require it (issue 13, section 2).
    const { loadOrCreateLocalServicesSecret } = await import('../local-services-secret.js');
    const secret = !base.databaseUrl || !base.redisUrl ? await loadOrCreateLocalServicesSecret(base.dataDir) : '';
    const databaseUrl =
      base.databaseUrl ??
      (await step('database', async () => {
        const { startEmbeddedPostgres } = await import('../../store/embedded-postgres.js');
        const url = await started(stops, await startEmbeddedPostgres({ dataDir: base.dataDir, password: secret }));
        return { value: url, note: `embedded PostgreSQL (PGlite) on 127.0.0.1:${new URL(url).port}, files under ${path.join(base.dataDir, 'pglite')}` };
      }));
    if (base.databaseUrl) step.note('database', 'DATABASE_URL');
    const redisUrl =
      base.redisUrl ??
      (await step('redis', async () => {
        const { startPrivateRedis } = await import('../local-redis.js');
        const url = await started(stops, await startPrivateRedis({ dataDir: base.dataDir, password: secret }));
        return { value: url, note: `private redis-server on 127.0.0.1:${new URL(url).port}, data under ${path.join(base.dataDir, 'redis')}` };
      }));
    if (base.redisUrl) step.note('redis', 'REDIS_URL');
    // One pg connection to the one-backend embedded store unless KMS_DB_POOL_SIZE says
    // otherwise (its gate makes any number safe; more connections only queue there).
    const poolSize = base.databaseUrl || process.env.KMS_DB_POOL_SIZE ? base.databasePoolSize : EMBEDDED_DB_POOL_SIZE;
    const config: KmsConfig = { ...base, databaseUrl, redisUrl, databasePoolSize: poolSize };
    await writeRuntime(base.dataDir, {
      databaseUrl,
      redisUrl,
      databasePoolSize: config.databasePoolSize,
      clock: config.clock,
      queuePrefix: config.jobs.queuePrefix,
      pid: process.pid,
    });
    stops.push(() => rm(runtimeFile(base.dataDir), { force: true }));
    const running = await step('API', async () => {
      const { runServer, describeListening } = await import('../../main.js');
      const server = await runServer(config);
      stops.push(() => server.stop());
      return { value: server, note: `migrations applied, listening on ${describeListening(server)}` };
    });
    // One process runs the API and the job workers (material expiry, rotation, wrapping-key pool …).
    await step('job workers', async () => {
      const { startJobWorkers } = await import('../../jobs/workers.js');
      const workers = await startJobWorkers(running.kms);
      stops.push(() => workers.close());
      return 'started';
    });
    const instances = await step('instances', async () => {
      const { ensureDefaultInstances } = await import('../../services/bootstrap.js');
      const ids = await ensureDefaultInstances(running.kms.deps);
      return { value: ids, note: `HSM ${ids.hsm}, SOFTWARE ${ids.software}` };
    });
    const seedFile = process.env.KMS_SEED_FILE;
    if (seedFile) {
      await step('seed', async () => {
        const { applySeedAtStart } = await import('../seed-at-start.js');
        return applySeedAtStart(running.kms.deps, seedFile);
      });
    }
    process.stdout.write(
      banner({
        endpoint: running.endpoint,
        credentialsFile: running.credentialsFile,
        pinnedAccessKeyId: pinned?.accessKeyId,
        instances,
        capabilities: { ...hsm.capabilities },
        serviceNow: config.clock === 'manual' ? running.kms.deps.clock.now() : undefined,
      }),
    );
    const { stopOnSignals } = await import('../../main.js');
    stopOnSignals(stopAll);
  } catch (error) {
    await stopAll();
    throw error;
  }
}

type StepResult<T> = string | { value: T; note: string };

/**
 * One stderr line per step: `quickstart: [1.2 s] HSM token: "hsm-kms" created under …`.
 * A step returns a note, or a value with its note.
 */
function stepLogger() {
  const write = (name: string, seconds: number | undefined, note: string) =>
    process.stderr.write(`quickstart: ${seconds === undefined ? '' : `[${seconds.toFixed(1)} s] `}${name}: ${note}\n`);
  const step = async <T = undefined>(name: string, run: () => Promise<StepResult<T>>): Promise<T> => {
    const started = performance.now();
    const result = await run();
    const seconds = (performance.now() - started) / 1000;
    if (typeof result === 'string') {
      write(name, seconds, result);
      return undefined as T;
    }
    write(name, seconds, result.note);
    return result.value;
  };
  return Object.assign(step, { note: (name: string, source: string) => write(name, undefined, `${source} (set in the environment)`) });
}

/** `KMS_PORT` must be free (0: any port is). Probed by binding it briefly. */
async function assertPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const probe = net.createServer();
    probe.once('error', (e: NodeJS.ErrnoException) => resolve(e));
    probe.listen(port, host, () => probe.close(() => resolve(undefined)));
  });
  if (!error) return;
  const reason = error.code === 'EADDRINUSE' ? 'is already in use' : `cannot be bound (${error.code ?? error.message})`;
  throw new Error(`KMS_PORT ${port} on ${host} ${reason}: stop what holds it, or pick another port with --port N or KMS_PORT (0 picks a free one).`);
}

/** `runtime.json` (0600, written whole): how CLI verbs attach; its URLs carry the local secret. */
async function writeRuntime(dataDir: string, runtime: LocalRuntime & { pid: number }): Promise<void> {
  const file = runtimeFile(dataDir);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(runtime)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}

async function started(stops: Array<() => Promise<void>>, service: { url: string; stop(): Promise<void> }): Promise<string> {
  stops.push(() => service.stop());
  return service.url;
}

/**
 * What the quickstart prints on stdout once it serves: where things are, and an example file
 * that runs as pasted in any folder (ESM, its own imports, the SDK package named and pinned).
 */
export function banner(o: {
  endpoint: string;
  credentialsFile: string;
  /** KMS_BOOTSTRAP_ACCESS_KEY_ID when the admin key is pinned. */
  pinnedAccessKeyId?: string | undefined;
  instances: { hsm: string; software: string };
  capabilities: Record<string, boolean>;
  /** Set when KMS_CLOCK=manual: the service time at start. */
  serviceNow: Date | undefined;
}): string {
  const caps = Object.entries(o.capabilities)
    .map(([name, ok]) => `${name}=${ok ? 'yes' : 'no'}`)
    .join(' ');
  const credentials = `${o.credentialsFile}${o.pinnedAccessKeyId ? `   (pinned: KMS_BOOTSTRAP_ACCESS_KEY_ID=${o.pinnedAccessKeyId})` : ''}`;
  const clock = o.serviceNow
    ? `manual (the time machine): service time ${o.serviceNow.toISOString()}; move it with \`npx kms clock advance 30d\``
    : 'system';
  return `
hsm-kms is running.

  Endpoint      ${o.endpoint}   (protocol: http)
  Credentials   ${credentials}
  HSM instance  ${o.instances.hsm}   (hsm-default)
  SW instance   ${o.instances.software}   (software-default)
  HSM probe     ${caps}
  Clock         ${clock}

From this repo:   ${cliPrefix(o.credentialsFile)}npx kms key create --instance ${o.instances.hsm} && ${cliPrefix(o.credentialsFile)}npx kms key list --table

From Node, in any folder: save the lines below as kms-example.mjs, then
  npm i @alicloud/kms20160120@1.2.0 && node kms-example.mjs

${EXAMPLE_FILE(o.credentialsFile)}
Health: curl http://${o.endpoint}/health        Stop: Ctrl-C
`;
}

/** `KMS_DATA_DIR=… ` when the CLI, run from here, would not find the credentials in ./.kms/. */
const cliPrefix = (credentialsFile: string): string => {
  const dataDir = path.dirname(credentialsFile);
  return dataDir === path.resolve('.kms') ? '' : `KMS_DATA_DIR=${dataDir} `;
};

const EXAMPLE_FILE = (credentialsFile: string) => `// kms-example.mjs — @alicloud/kms20160120@1.2.0 against hsm-kms
import { readFileSync } from 'node:fs';
import KMS from '@alicloud/kms20160120';

const creds = JSON.parse(readFileSync(${JSON.stringify(credentialsFile)}, 'utf8'));
const kms = new KMS.default({ endpoint: creds.Endpoint, protocol: 'http', regionId: 'cn-hangzhou',
  accessKeyId: creds.AccessKeyId, accessKeySecret: creds.AccessKeySecret });
const { keyMetadata } = await kms.createKey(new KMS.CreateKeyRequest({ description: 'kms-example' }));
const { ciphertextBlob } = await kms.encrypt(new KMS.EncryptRequest({ keyId: keyMetadata.keyId, plaintext: 'hello' }));
const { plaintext } = await kms.decrypt(new KMS.DecryptRequest({ ciphertextBlob }));
console.log(keyMetadata.keyId, plaintext);
`;
