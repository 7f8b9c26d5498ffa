/**
 * `npx tsx scripts/bench-embedded-store.ts [poolSize=1] [requests=500]`: the quickstart's
 * embedded store under concurrent mixed requests (issue 13). Starts PGlite behind our
 * wire-protocol front in a temp dir and the API on it, makes six keys over both tiers, then
 * fires all the requests at once — Encrypt, Decrypt, DescribeKey, ListKeys, CreateKey — and
 * prints requests per second, answers about the wrong key, and errors by status and code.
 * Needs Redis (REDIS_URL, default the local one). Not a test: it never fails on a number.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from '../src/store/embedded-postgres.js';
import { openApiClient } from '../test/helpers/sdk.js';
import { startServer } from '../test/helpers/server.js';

const poolSize = Number(process.argv[2] ?? 1);
const requests = Number(process.argv[3] ?? 500);

const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-bench-embedded-'));
const store = await startEmbeddedPostgres({ dataDir, port: 0, password: randomBytes(32).toString('hex') });
const server = await startServer({ databaseUrl: store.url, env: { KMS_DB_POOL_SIZE: String(poolSize), KMS_LOG_LEVEL: 'warn' } });
try {
  const call = openApiClient(server.endpoint, server.admin);
  const instances = [server.hsmInstanceId, server.softwareInstanceId];
  const keys: string[] = [];
  for (let i = 0; i < 6; i++) keys.push((await call('CreateKey', { DKMSInstanceId: instances[i % 2] })).KeyMetadata.KeyId as string);
  const blobs = new Map<string, string>();
  for (const keyId of keys) blobs.set(keyId, (await call('Encrypt', { KeyId: keyId, Plaintext: `pt-${keyId}` })).CiphertextBlob as string);

  let wrongAnswers = 0;
  const errors: Record<string, number> = {};
  const started = performance.now();
  await Promise.all(
    Array.from({ length: requests }, async (_, i) => {
      const keyId = keys[i % keys.length]!;
      try {
        switch (i % 5) {
          case 0:
            if ((await call('Encrypt', { KeyId: keyId, Plaintext: 'x' })).KeyId !== keyId) wrongAnswers++;
            break;
          case 1: {
            const answer = await call('Decrypt', { CiphertextBlob: blobs.get(keyId) });
            if (answer.KeyId !== keyId || answer.Plaintext !== `pt-${keyId}`) wrongAnswers++;
            break;
          }
          case 2:
            if ((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyId !== keyId) wrongAnswers++;
            break;
          case 3:
            if ((await call('ListKeys', { PageSize: 50 })).TotalCount < keys.length) wrongAnswers++;
            break;
          default: {
            const instance = instances[(i >> 1) % 2]!;
            if ((await call('CreateKey', { DKMSInstanceId: instance })).KeyMetadata.DKMSInstanceId !== instance) wrongAnswers++;
          }
        }
      } catch (error) {
        const e = error as { statusCode?: number; data?: { Code?: string }; code?: string };
        const label = `${e.statusCode ?? '-'} ${e.data?.Code ?? e.code ?? 'error'}`;
        errors[label] = (errors[label] ?? 0) + 1;
      }
    }),
  );
  const ms = performance.now() - started;
  process.stdout.write(`${JSON.stringify({ poolSize, requests, ms: Math.round(ms), perSecond: Math.round((requests * 1000) / ms), wrongAnswers, errors })}\n`);
} finally {
  await server.stop().catch(() => undefined);
  await store.stop().catch(() => undefined);
  await rm(dataDir, { recursive: true, force: true });
}
