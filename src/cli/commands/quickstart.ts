import { rm, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { loadConfig } from '../../config.js';
import { startJobWorkers } from '../../jobs/workers.js';
import { runServer, stopOnSignals } from '../../main.js';
import { ensureDefaultInstances } from '../../services/bootstrap.js';
import { startEmbeddedPostgres } from '../../store/embedded-postgres.js';
import { startPrivateRedis } from '../local-redis.js';
import { runtimeFile } from '../local-kms.js';
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
        const hsm = await initHsm({ quiet: true });
        const databaseUrl = base.databaseUrl ?? (await started(stops, await startEmbeddedPostgres({ dataDir: base.dataDir })));
        const redisUrl = base.redisUrl ?? (await started(stops, await startPrivateRedis({ dataDir: base.dataDir })));
        const config = { ...base, databaseUrl, redisUrl };
        await writeFile(runtimeFile(base.dataDir), `${JSON.stringify({ databaseUrl, redisUrl, pid: process.pid })}\n`, { mode: 0o600 });
        stops.push(() => rm(runtimeFile(base.dataDir), { force: true }));
        const running = await runServer(config);
        stops.push(() => running.stop());
        // One process runs the API and the job workers (material expiry, wrapping-key pool).
        const workers = await startJobWorkers(running.kms);
        stops.push(() => workers.close());
        const instances = await ensureDefaultInstances(running.kms.deps);
        printBanner({ endpoint: running.endpoint, credentialsFile: running.credentialsFile, instances, capabilities: { ...hsm.capabilities } });
        stopOnSignals(stopAll);
      } catch (error) {
        await stopAll();
        throw error;
      }
    });
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
