/**
 * Profiling rig, server side (not a test, not the benchmark): provisions its own database and
 * SoftHSM2 token, runs `kms serve`'s code path (runServer, the real pino logger on stdout) and
 * writes what the load side needs (endpoint, an admin key, an HSM key of each storage mechanism and
 * a SOFTWARE key, one ciphertext of each) to the file named by argv[2]. Stops and cleans up on SIGINT/SIGTERM.
 *
 *   node --cpu-prof --import tsx scripts/profile-server.ts /tmp/profile.json > /tmp/server.log
 *   tsx scripts/profile-load.ts /tmp/profile.json
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createRpcClient } from '../src/cli/rpc-client.js';
import { loadConfig } from '../src/config.js';
import { ensureMasterWrappingKey } from '../src/hsm/pkcs11/master-key.js';
import { provisionSoftHsmToken } from '../src/hsm/provision.js';
import { runServer, stopOnSignals } from '../src/main.js';
import { createAccessKey } from '../src/services/access.js';
import { systemCaller } from '../src/services/context.js';
import { createInstance } from '../src/services/instances.js';

const setupFile = process.argv[2] ?? '/tmp/kms-profile.json';
const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const dbName = `kms_profile_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client({ connectionString: baseUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
const dbUrl = new URL(baseUrl);
dbUrl.pathname = `/${dbName}`;
const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-profile-'));
const pins = { userPin: randomBytes(8).toString('hex'), soPin: randomBytes(8).toString('hex') };
await provisionSoftHsmToken({ dataDir, tokenLabel: 'profile', ...pins, log: () => undefined });
process.env.KMS_HSM_PIN = pins.userPin;
process.env.KMS_HSM_SO_PIN = pins.soPin;
const configEnv = {
  ...process.env,
  KMS_DATA_DIR: dataDir,
  DATABASE_URL: dbUrl.toString(),
  KMS_HSM_TOKEN_LABEL: 'profile',
  KMS_PORT: process.env.KMS_PORT ?? '0',
  KMS_QUEUE_PREFIX: `profile-${dbName}`,
};
const config = loadConfig(configEnv);
// As `kms hsm init` does: the master wrapping key HsmEncryptedDatabase storage needs (SO step,
// before the server logs in).
await ensureMasterWrappingKey({ modulePath: config.hsm.modulePath, tokenLabel: 'profile', ...pins });
const running = await runServer(config);
const deps = running.kms.deps;
const key = await createAccessKey(deps, { role: 'admin' }, systemCaller);
const client = createRpcClient({ endpoint: `http://${running.endpoint}`, accessKeyId: key.accessKeyId, accessKeySecret: key.accessKeySecret });
const keys: Record<string, { keyId: string; ciphertext: string }> = {};
// HSM: HsmInternal (a token object per version); HSM_EDB: HsmEncryptedDatabase (wrapped in
// Postgres, unwrapped into a session object on use).
const tiers = [
  ['HSM', { type: 'HSM' }],
  ['HSM_EDB', { type: 'HSM', keyStorageMechanism: 'HsmEncryptedDatabase' }],
  ['SOFTWARE', { type: 'SOFTWARE' }],
] as const;
for (const [tier, kind] of tiers) {
  const instance = await createInstance(deps, { ...kind, keyQuota: 10, qps: 1_000_000 }, systemCaller);
  const created = (await client.call('CreateKey', { DKMSInstanceId: instance.id })) as { KeyMetadata: { KeyId: string } };
  const keyId = created.KeyMetadata.KeyId;
  const { CiphertextBlob } = (await client.call('Encrypt', { KeyId: keyId, Plaintext: 'x'.repeat(64) })) as { CiphertextBlob: string };
  keys[tier] = { keyId, ciphertext: CiphertextBlob };
}
// PROFILE_PROCESSES=N: the load goes to `kms serve --processes N` on the same database and
// token instead (the in-process server above only set things up).
const processes = Number(process.env.PROFILE_PROCESSES ?? 0);
let cluster: ChildProcess | undefined;
let endpoint = running.endpoint;
let pids = [process.pid];
if (processes > 0) {
  const port = 20_000 + (process.pid % 20_000);
  cluster = spawn(process.execPath, [process.env.PROFILE_KMS_BIN ?? path.join(import.meta.dirname, '../bin/kms.mjs'), 'serve', '--processes', String(processes)], {
    env: { ...process.env, KMS_DATA_DIR: dataDir, DATABASE_URL: dbUrl.toString(), KMS_HSM_TOKEN_LABEL: 'profile', KMS_PORT: String(port), KMS_QUEUE_PREFIX: config.jobs.queuePrefix },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  endpoint = `127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  const children = () => readFileSync(`/proc/${cluster!.pid}/task/${cluster!.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  while (Date.now() < deadline) {
    const ok = await fetch(`http://${endpoint}/health`).then((r) => r.ok, () => false);
    if (ok && (processes === 1 || children().length === processes)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  // Every process answers: give the late ones a moment to finish starting.
  await new Promise((r) => setTimeout(r, 3_000));
  // One process: `kms serve` serves in the process it was started as.
  pids = processes === 1 ? [cluster.pid!] : children();
}
await writeFile(setupFile, JSON.stringify({ endpoint, pid: pids[0], pids, accessKeyId: key.accessKeyId, accessKeySecret: key.accessKeySecret, keys }));
process.stderr.write(`profile server ready at ${endpoint} (${setupFile})\n`);
stopOnSignals(async () => {
  if (cluster) {
    cluster.kill('SIGTERM');
    await new Promise((resolve) => cluster!.once('exit', resolve));
  }
  await running.stop();
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.end();
  await rm(dataDir, { recursive: true, force: true });
});
