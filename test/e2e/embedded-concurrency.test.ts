import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMBEDDED_DB_POOL_SIZE } from '../../src/cli/local-kms.js';
import { startEmbeddedPostgres } from '../../src/store/embedded-postgres.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Regression test for issue 13, section 1: under a few dozen concurrent requests the
 * quickstart's embedded store (pglite-socket) answered `Encrypt(A)` with key B, `DescribeKey(A)`
 * with B's metadata, existing keys with KeyNotFound, and 500s, because the extended-protocol
 * messages of different `pg` connections interleaved in PGlite's one backend.
 *
 * The same body runs on the embedded store (PGlite behind our front, in this process; the
 * service and the verbs on the quickstart's pool size, and on pools of 8) and on a
 * real Postgres: 240+ mixed SDK
 * calls over both tiers, 48 in flight at a time, while other processes run CLI operator verbs
 * against the same store. Every answer must be about the key asked, and nothing may fail.
 */
const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');
/** Calls made at least (the issue asks for 200+). */
const MIN_CALLS = 240;
/**
 * Calls in flight at once: "a few dozen", as in the reproduction. Far more would only
 * measure the service's load shedding (a request waiting over 5 s for a store connection is
 * answered 503 by design) on a loaded 2-core machine, not the store's correctness.
 */
const IN_FLIGHT = 48;

interface Store {
  databaseUrl?: string;
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** PGlite behind our front, in this process; the service and the verbs on pools of `poolSize`. */
const embeddedStore = (poolSize: number) => async (): Promise<Store> => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-embedded-concurrency-'));
  const embedded = await startEmbeddedPostgres({ dataDir, port: 0, password: randomBytes(32).toString('hex') });
  return {
    databaseUrl: embedded.url,
    env: { KMS_DB_POOL_SIZE: String(poolSize) },
    async stop() {
      await embedded.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
};

async function realPostgres(): Promise<Store> {
  // startServer clones the run's migrated template database.
  return { env: {}, stop: async () => undefined };
}

const STORES = [
  // As the quickstart runs it (the service's pool against the embedded store).
  { name: `embedded store, pools of ${EMBEDDED_DB_POOL_SIZE} (the quickstart's)`, open: embeddedStore(EMBEDDED_DB_POOL_SIZE) },
  // The front's guarantee holds for any number of connections (pglite-socket, with the default
  // pool of 10, is what answered with the wrong keys).
  { name: 'embedded store, pools of 8', open: embeddedStore(8) },
  { name: 'real Postgres', open: realPostgres },
];

describe.each(STORES)('concurrent mixed requests on the $name', ({ open }) => {
  let store: Store;
  let server: TestServer;
  let call: CallApi;
  let cliEnv: NodeJS.ProcessEnv;

  beforeAll(async () => {
    store = await open();
    server = await startServer({ ...(store.databaseUrl ? { databaseUrl: store.databaseUrl } : {}), env: store.env });
    call = openApiClient(server.endpoint, server.admin);
    cliEnv = {
      ...process.env,
      ...store.env,
      DATABASE_URL: server.databaseUrl,
      REDIS_URL: server.config.redisUrl,
      KMS_DATA_DIR: server.token.dataDir,
      KMS_HSM_TOKEN_LABEL: server.token.label,
      KMS_HSM_PIN: server.token.userPin,
      KMS_HSM_SO_PIN: server.token.soPin,
      SOFTHSM2_CONF: server.token.confPath,
      KMS_LOG_LEVEL: 'warn',
    };
  });

  afterAll(async () => {
    await server?.stop();
    await store?.stop();
  });

  it('answers every call about the key it was asked for, with no failure, while CLI verbs run in other processes', async () => {
    // Six keys with material over both tiers, and one BYOK key per tier for GetParametersForImport.
    const instances = [server.hsmInstanceId, server.softwareInstanceId];
    const keys: string[] = [];
    for (let i = 0; i < 6; i++) keys.push((await call('CreateKey', { DKMSInstanceId: instances[i % 2] })).KeyMetadata.KeyId as string);
    const external: string[] = [];
    for (const instance of instances) external.push((await call('CreateKey', { DKMSInstanceId: instance, Origin: 'EXTERNAL' })).KeyMetadata.KeyId as string);
    const sealed = new Map<string, string>();
    for (const keyId of keys) sealed.set(keyId, (await call('Encrypt', { KeyId: keyId, Plaintext: `before-${keyId}` })).CiphertextBlob as string);

    const failures: string[] = [];
    const encrypted: Array<{ keyId: string; plaintext: string; blob: string }> = [];
    const created: Array<{ instance: string; keyId: string }> = [];
    const check = (label: string, condition: boolean, detail: unknown) => {
      if (!condition) failures.push(`${label}: ${JSON.stringify(detail)}`);
    };
    const callNumber = async (i: number): Promise<void> => {
      const keyId = keys[i % keys.length]!;
      const label = `#${i}`;
      try {
        // Past MIN_CALLS (the storm goes on while the CLI verbs run) no more keys are created,
        // so the instances' quotas hold however long that takes.
        switch (i < MIN_CALLS ? i % 8 : i % 7) {
          case 0:
          case 1: {
            const plaintext = `p-${i}-${randomBytes(6).toString('hex')}`;
            const answer = await call('Encrypt', { KeyId: keyId, Plaintext: plaintext });
            check(`${label} Encrypt(${keyId})`, answer.KeyId === keyId, answer.KeyId);
            encrypted.push({ keyId, plaintext, blob: answer.CiphertextBlob as string });
            return;
          }
          case 2:
          case 3: {
            const answer = await call('Decrypt', { CiphertextBlob: sealed.get(keyId) });
            check(`${label} Decrypt(under ${keyId})`, answer.KeyId === keyId && answer.Plaintext === `before-${keyId}`, answer);
            return;
          }
          case 4: {
            const answer = await call('DescribeKey', { KeyId: keyId });
            check(`${label} DescribeKey(${keyId})`, answer.KeyMetadata?.KeyId === keyId, answer.KeyMetadata?.KeyId);
            return;
          }
          case 5: {
            const answer = await call('ListKeys', { PageSize: 100 });
            const listed = new Set((answer.Keys.Key as Array<{ KeyId: string }>).map((k) => k.KeyId));
            check(`${label} ListKeys`, keys.every((k) => listed.has(k)), answer.TotalCount);
            return;
          }
          case 6: {
            // i % 8 fixes i's parity: the round number picks the tier.
            const byok = external[(i >> 3) % 2]!;
            const answer = await call('GetParametersForImport', { KeyId: byok, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
            check(`${label} GetParametersForImport(${byok})`, answer.KeyId === byok && Boolean(answer.ImportToken), answer.KeyId);
            return;
          }
          default: {
            const instance = instances[(i >> 3) % 2]!;
            const answer = await call('CreateKey', { DKMSInstanceId: instance });
            check(`${label} CreateKey(${instance})`, answer.KeyMetadata?.DKMSInstanceId === instance, answer.KeyMetadata);
            created.push({ instance, keyId: answer.KeyMetadata.KeyId as string });
          }
        }
      } catch (error) {
        const e = error as { statusCode?: number; code?: string; message?: string; data?: { Code?: string } };
        failures.push(`${label} (key ${keyId}): ${e.statusCode ?? ''} ${e.data?.Code ?? e.code ?? ''} ${e.message ?? String(error)}`);
      }
    };

    const started = Date.now();
    // IN_FLIGHT lanes issue calls until at least MIN_CALLS were made AND the CLI verbs are done,
    // so the verbs' processes always run during the storm, however long either takes.
    let cliDone = false;
    let made = 0;
    const lane = async () => {
      while (made < MIN_CALLS || !cliDone) await callNumber(made++);
    };
    const cli = runCliVerbs(cliEnv, server.softwareInstanceId).finally(() => (cliDone = true));
    const [verbs] = await Promise.all([cli, Promise.all(Array.from({ length: IN_FLIGHT }, lane))]);
    const elapsed = Date.now() - started;
    process.stdout.write(`[embedded-concurrency] ${made} calls, ${IN_FLIGHT} in flight, in ${elapsed} ms (${((made * 1000) / elapsed).toFixed(0)}/s)\n`);
    expect(made).toBeGreaterThanOrEqual(MIN_CALLS);
    expect(failures).toEqual([]);
    expect(verbs).toHaveLength(3);
    expect(verbs.filter((v) => !v.ok)).toEqual([]);

    // The SDK rides Node's global keep-alive agent. Lanes that finished early left sockets idle
    // while the slowest calls ran; one idle for the server's 5 s keepAliveTimeout may be closed
    // under a request sent on it (ECONNRESET, a client-side race, not the store): the checks
    // below start on fresh connections. Nothing is in flight now.
    http.globalAgent.destroy();

    // Every ciphertext of the storm decrypts (concurrently, too) to its plaintext, under its key.
    expect(encrypted.length).toBeGreaterThan(0);
    const opened = await Promise.all(
      encrypted.map(async ({ keyId, plaintext, blob }) => {
        const answer = await call('Decrypt', { CiphertextBlob: blob });
        return answer.KeyId === keyId && answer.Plaintext === plaintext ? 'ok' : `${keyId}: got ${answer.KeyId as string}`;
      }),
    );
    expect(opened.filter((o) => o !== 'ok')).toEqual([]);
    // And every key created in the storm exists, in the instance it was created in.
    const described = await Promise.all(created.map(async ({ keyId }) => (await call('DescribeKey', { KeyId: keyId })).KeyMetadata));
    expect(described.map((m) => m.DKMSInstanceId)).toEqual(created.map((c) => c.instance));
  }, 180_000);
});

/**
 * Operator verbs other processes run against the same store while the storm goes on:
 * creating an instance and an access key, listing instances. Each verb is a `kms` process of
 * its own (its own pool, its own connections to the store).
 */
async function runCliVerbs(env: NodeJS.ProcessEnv, instanceId: string): Promise<Array<{ verb: string; ok: boolean }>> {
  const kms = (...args: string[]) => run(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), ...args], { cwd: repoRoot, env });
  const results: Array<{ verb: string; ok: boolean }> = [];
  const verbs: Array<{ args: string[]; accept: (out: unknown) => boolean }> = [
    { args: ['instance', 'create', '--type', 'SOFTWARE', '--key-quota', '5', '--qps', '10'], accept: (o) => /^kst-/.test((o as { InstanceId?: string }).InstanceId ?? '') },
    { args: ['access-key', 'create', '--role', 'key-user', '--instances', instanceId], accept: (o) => Boolean((o as { AccessKeyId?: string }).AccessKeyId) },
    { args: ['instance', 'list'], accept: (o) => Array.isArray(o) && o.length >= 2 },
  ];
  // Each verb is a `kms` process of its own, all at once: more clients of the store during the storm.
  await Promise.all(
    verbs.map(async ({ args, accept }) => {
      const verb = args.join(' ');
      try {
        const { stdout } = await kms(...args);
        const ok = accept(JSON.parse(stdout));
        if (!ok) process.stderr.write(`[embedded-concurrency] ${verb} printed ${stdout}\n`);
        results.push({ verb, ok });
      } catch (error) {
        process.stderr.write(`[embedded-concurrency] ${verb} failed: ${(error as { stderr?: string }).stderr ?? String(error)}\n`);
        results.push({ verb, ok: false });
      }
    }),
  );
  return results;
}
