import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import type { Command } from 'commander';
import { type KmsConfig, loadConfig } from '../../config.js';
import { startJobWorkers } from '../../jobs/workers.js';
import { runServer, stopOnSignals } from '../../main.js';
import { ensureDefaultInstances } from '../../services/bootstrap.js';
import { startEmbeddedPostgres } from '../../store/embedded-postgres.js';
import { type LocalRuntime, EMBEDDED_DB_POOL_SIZE, runtimeFile } from '../local-kms.js';
import { startPrivateRedis } from '../local-redis.js';
import { loadOrCreateLocalServicesSecret } from '../local-services-secret.js';
import { initHsm } from './hsm.js';

/**
 * `npm run quickstart`: token under .kms/, embedded Postgres (PGlite) unless DATABASE_URL is
 * set, a private redis-server unless REDIS_URL is set, migrations, one HSM and one SOFTWARE
 * instance, the API on 127.0.0.1:8080. Ctrl-C stops it all; a second run reuses the state.
 */
export function registerQuickstartCommand(program: Command): void {
  program
    .command('quickstart')
    .description('start a complete local KMS (token, database, redis, API) under the data dir')
    .action(async () => {
      const base = loadConfig();
      const stops: Array<() => Promise<void>> = [];
      const stopAll = async () => {
        for (const stop of stops.reverse()) await stop().catch(() => undefined);
      };
      try {
        // Before anything is provisioned: a taken port is the commonest failure, and the
        // cheapest to report.
        await assertPortFree(base.host, base.port);
        const hsm = await initHsm({ quiet: true });
        // The embedded Postgres and the private Redis require it (issue 13, section 2).
        const secret = !base.databaseUrl || !base.redisUrl ? await loadOrCreateLocalServicesSecret(base.dataDir) : '';
        const databaseUrl = base.databaseUrl ?? (await started(stops, await startEmbeddedPostgres({ dataDir: base.dataDir, password: secret })));
        const redisUrl = base.redisUrl ?? (await started(stops, await startPrivateRedis({ dataDir: base.dataDir, password: secret })));
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
        const running = await runServer(config);
        stops.push(() => running.stop());
        // One process runs the API and the job workers (material expiry, wrapping-key pool).
        const workers = await startJobWorkers(running.kms);
        stops.push(() => workers.close());
        const instances = await ensureDefaultInstances(running.kms.deps);
        printBanner({
          endpoint: running.endpoint,
          credentialsFile: running.credentialsFile,
          instances,
          capabilities: { ...hsm.capabilities },
          serviceNow: config.clock === 'manual' ? running.kms.deps.clock.now() : undefined,
        });
        stopOnSignals(stopAll);
      } catch (error) {
        await stopAll();
        throw error;
      }
    });
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
  throw new Error(`KMS_PORT ${port} on ${host} ${reason}: stop what holds it, or set KMS_PORT to another port (0 picks a free one).`);
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

function printBanner(o: {
  endpoint: string;
  credentialsFile: string;
  instances: { hsm: string; software: string };
  capabilities: Record<string, boolean>;
  /** Set when KMS_CLOCK=manual: the service time at start. */
  serviceNow: Date | undefined;
}): void {
  const caps = Object.entries(o.capabilities)
    .map(([name, ok]) => `${name}=${ok ? 'yes' : 'no'}`)
    .join(' ');
  process.stdout.write(`
hsm-kms is running.

  Endpoint      ${o.endpoint}   (protocol: http)
  Credentials   ${o.credentialsFile}
  HSM instance  ${o.instances.hsm}
  SW instance   ${o.instances.software}
  HSM probe     ${caps}
  Clock         ${o.serviceNow ? `manual (the time machine): service time ${o.serviceNow.toISOString()}; move it with \`kms clock advance 30d\`` : 'system'}

Try it (Node, @alicloud/kms20160120):

  const KMS = require('@alicloud/kms20160120');
  const creds = require('${o.credentialsFile}');
  const kms = new KMS.default({ endpoint: creds.Endpoint, protocol: 'http', regionId: 'cn-hangzhou',
                                accessKeyId: creds.AccessKeyId, accessKeySecret: creds.AccessKeySecret });
  const { keyMetadata } = await kms.createKey(new KMS.CreateKeyRequest({}));
  const { ciphertextBlob } = await kms.encrypt(new KMS.EncryptRequest({ keyId: keyMetadata.keyId, plaintext: 'hello' }));

Health: curl http://${o.endpoint}/health        Stop: Ctrl-C
`);
}
