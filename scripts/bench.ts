/**
 * `npm run bench`: throughput and latency of the hot path, printed as numbers and as ratios to
 * what DESIGN.md measured for SoftHSM2 on this kind of machine. Needs PostgreSQL (DATABASE_URL,
 * default the local server) and Redis (REDIS_URL); makes its own database and token, and removes
 * both at the end. Not a test: it never fails on a number.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import pg from 'pg';
import { startHttpServer } from '../src/api/app.js';
import { createRpcClient } from '../src/cli/rpc-client.js';
import { loadConfig } from '../src/config.js';
import { provisionSoftHsmToken } from '../src/hsm/provision.js';
import { createKms } from '../src/kms.js';
import { createAccessKey } from '../src/services/access.js';
import { systemCaller } from '../src/services/context.js';
import { createInstance } from '../src/services/instances.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
/** DESIGN.md, "Measured on SoftHSM2 2.6.1 here": AES-256-GCM 1 KiB in the token, synchronous, one core. */
const DESIGN_TOKEN_GCM_PER_SECOND = 70_000;

async function timed(label: string, concurrency: number, op: () => Promise<unknown>): Promise<{ rate: number; p50: number; p99: number }> {
  const latencies: number[] = [];
  const deadline = performance.now() + SECONDS * 1000;
  let count = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const start = performance.now();
        await op();
        latencies.push(performance.now() - start);
        count += 1;
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  const result = { rate: count / SECONDS, p50: at(0.5), p99: at(0.99) };
  console.log(
    `${label.padEnd(44)} ${result.rate.toFixed(0).padStart(8)}/s   p50 ${result.p50.toFixed(2).padStart(7)} ms   p99 ${result.p99.toFixed(2).padStart(7)} ms`,
  );
  return result;
}

async function main(): Promise<void> {
  const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const dbName = `kms_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(baseUrl);
  dbUrl.pathname = `/${dbName}`;
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-bench-'));
  const pins = { userPin: randomBytes(8).toString('hex'), soPin: randomBytes(8).toString('hex') };
  await provisionSoftHsmToken({ dataDir, tokenLabel: 'bench', ...pins, log: () => undefined });
  const config = loadConfig({ ...process.env, KMS_DATA_DIR: dataDir, DATABASE_URL: dbUrl.toString(), KMS_HSM_TOKEN_LABEL: 'bench', KMS_PORT: '0' });
  const kms = await createKms(config, { logger: pino({ level: 'silent' }), pin: pins.userPin });
  const http = await startHttpServer(kms, '127.0.0.1', 0);
  try {
    const deps = kms.deps;
    const plaintext = randomBytes(1024);
    console.log(`hsm-kms bench: ${SECONDS}s per row, concurrency ${CONCURRENCY}, 1 KiB plaintexts, rss ${mb(process.memoryUsage().rss)}`);

    const apiOnly = process.env.BENCH_API_ONLY === '1';
    const versionId = randomUUID();
    await deps.hsm.generateVersionKey(versionId, { kind: 'aes', bits: 256 });
    const token = apiOnly
      ? { rate: DESIGN_TOKEN_GCM_PER_SECOND }
      : await timed('HSM port: AES-256-GCM encrypt in the token', CONCURRENCY, () => deps.hsm.encryptWithVersionKey(versionId, plaintext, undefined));
    const material = randomBytes(32);
    if (!apiOnly) await timed('SOFTWARE tier: node:crypto AES-256-GCM', 1, async () => deps.software.encrypt(material, plaintext, undefined));

    const key = await createAccessKey(deps, { role: 'admin' }, systemCaller);
    const client = createRpcClient({ endpoint: `http://127.0.0.1:${http.port}`, accessKeyId: key.accessKeyId, accessKeySecret: key.accessKeySecret });
    const hsmInstance = await createInstance(deps, { type: 'HSM', keyQuota: 10, qps: 100_000 }, systemCaller);
    const swInstance = await createInstance(deps, { type: 'SOFTWARE', keyQuota: 10, qps: 100_000 }, systemCaller);
    const text = 'x'.repeat(1024);
    const rows: Array<[string, { rate: number }]> = [];
    for (const [tier, instanceId] of [['HSM', hsmInstance.id], ['SOFTWARE', swInstance.id]] as const) {
      const created = (await client.call('CreateKey', { DKMSInstanceId: instanceId })) as { KeyMetadata: { KeyId: string } };
      const keyId = created.KeyMetadata.KeyId;
      const { CiphertextBlob } = (await client.call('Encrypt', { KeyId: keyId, Plaintext: text })) as { CiphertextBlob: string };
      rows.push([`${tier} Encrypt`, await timed(`API (signed, over HTTP): Encrypt, ${tier} tier`, CONCURRENCY, () => client.call('Encrypt', { KeyId: keyId, Plaintext: text }))]);
      rows.push([`${tier} Decrypt`, await timed(`API (signed, over HTTP): Decrypt, ${tier} tier`, CONCURRENCY, () => client.call('Decrypt', { CiphertextBlob }))]);
    }
    console.log(`\nratios`);
    console.log(`  token GCM via the async port / DESIGN.md's synchronous 70,000/s: ${(token.rate / DESIGN_TOKEN_GCM_PER_SECOND).toFixed(3)}`);
    for (const [name, r] of rows) console.log(`  ${name.padEnd(18)} API / token GCM: ${(r.rate / token.rate).toFixed(3)}`);
    console.log(`rss after: ${mb(process.memoryUsage().rss)}`);
  } finally {
    await http.close();
    await kms.close();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
    await rm(dataDir, { recursive: true, force: true });
  }
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;

await main();
