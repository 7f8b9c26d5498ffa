/**
 * Measures what HsmEncryptedDatabase storage costs and gains against HsmInternal token objects
 * on this machine's SoftHSM2 (issue 16), with nothing mocked:
 * - AES-256-GCM of 64 bytes through pkcs11js with the key as a token object vs a session object
 *   (synchronous calls, one session), on the fresh token and again once it holds N token keys;
 * - C_UnwrapKey of an AES-KWP blob under the master key into a session object;
 * - CreateKey through the real SDK transport on an HsmInternal and an HsmEncryptedDatabase
 *   instance (16 concurrent callers).
 * Its own token (temp dir), its own Postgres database (dropped at the end), Redis at REDIS_URL.
 *
 *   npx tsx scripts/measure-wrapped-storage.ts [--keys 300]
 * Prints one table; no pass/fail (the benchmark has the targets).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pkcs11js from 'pkcs11js';
import { pino } from 'pino';
import { startHttpServer } from '../src/api/app.js';
import { loadConfig } from '../src/config.js';
import { MASTER_WRAPPING_KEY_ID, ensureMasterWrappingKey } from '../src/hsm/pkcs11/master-key.js';
import * as m from '../src/hsm/pkcs11/mechanisms.js';
import { acquireModule, findTokenSlot, releaseModule } from '../src/hsm/pkcs11/module.js';
import { findObjects } from '../src/hsm/pkcs11/object-inventory.js';
import { wrappableTemplate } from '../src/hsm/pkcs11/wrapped-keys.js';
import { provisionSoftHsmToken } from '../src/hsm/provision.js';
import { createKms } from '../src/kms.js';
import { createAccessKey } from '../src/services/access.js';
import { systemCaller } from '../src/services/context.js';
import { createInstance } from '../src/services/instances.js';

const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const keysArg = process.argv.indexOf('--keys');
const KEYS = keysArg > 0 ? Number(process.argv[keysArg + 1]) : 300;
const GCM_OPS = 20_000;
const UNWRAPS = 5_000;

const rows: Array<{ what: string; rate: string }> = [];
const record = (what: string, ops: number, seconds: number) => rows.push({ what, rate: `${Math.round(ops / seconds).toLocaleString('en')}/s` });

function timed(fn: () => void, ops: number): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** AES-GCM 64 B, sync, one session: the key as a token object and as a session object. */
function measureGcm(p11: pkcs11js.PKCS11, session: pkcs11js.Handle, label: string): void {
  const tokenKey = p11.C_GenerateKey(session, m.aesKeyGen, m.aesKeyTemplate({ token: true, id: `measure-${label}`, valueLength: 32 }));
  const sessionKey = p11.C_GenerateKey(session, m.aesKeyGen, m.aesKeyTemplate({ token: false, valueLength: 32 }));
  const plaintext = randomBytes(64);
  const out = Buffer.alloc(64 + 16);
  const iv = randomBytes(12);
  try {
    for (const [kind, key] of [
      ['token object', tokenKey],
      ['session object', sessionKey],
    ] as const) {
      const op = () => {
        p11.C_EncryptInit(session, m.aesGcm(iv, undefined), key);
        p11.C_Encrypt(session, plaintext, out);
      };
      timed(op, 1_000); // warm-up
      record(`AES-256-GCM 64 B, pkcs11js sync, ${kind} (${label})`, GCM_OPS, timed(op, GCM_OPS));
    }
  } finally {
    p11.C_DestroyObject(session, tokenKey);
    p11.C_DestroyObject(session, sessionKey);
  }
}

function measureUnwrap(p11: pkcs11js.PKCS11, session: pkcs11js.Handle): void {
  const [master] = findObjects(p11, session, m.secretKeyById(MASTER_WRAPPING_KEY_ID));
  if (master === undefined) throw new Error('no master wrapping key');
  const key = p11.C_GenerateKey(session, m.aesKeyGen, wrappableTemplate('aes', 'measure', 32));
  const blob = p11.C_WrapKey(session, m.aesKeyWrapPad, master, key, Buffer.alloc(64));
  p11.C_DestroyObject(session, key);
  const template: pkcs11js.Template = [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_ENCRYPT, value: true },
    { type: pkcs11js.CKA_DECRYPT, value: true },
  ];
  record('C_UnwrapKey AES-KWP into a session object (+ C_DestroyObject)', UNWRAPS, timed(() => p11.C_DestroyObject(session, p11.C_UnwrapKey(session, m.aesKeyWrapPad, master, blob, template)), UNWRAPS));
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-measure-'));
  const userPin = randomBytes(8).toString('hex');
  const soPin = randomBytes(8).toString('hex');
  const label = 'measure';
  delete process.env.SOFTHSM2_CONF;
  await provisionSoftHsmToken({ dataDir, tokenLabel: label, userPin, soPin, log: () => undefined });
  await ensureMasterWrappingKey({ modulePath: MODULE, tokenLabel: label, userPin, soPin });

  const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const dbName = `measure_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = new URL(baseUrl);
  url.pathname = `/${dbName}`;

  const config = loadConfig({
    KMS_DATA_DIR: dataDir,
    KMS_PORT: '0',
    DATABASE_URL: url.toString(),
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    KMS_HSM_TOKEN_LABEL: label,
    KMS_QUEUE_PREFIX: `measure-${randomBytes(4).toString('hex')}`,
    KMS_WRAPPING_KEY_POOL_SIZE: '0',
  });
  const kms = await createKms(config, { logger: pino({ level: 'silent' }), pin: userPin });
  const http = await startHttpServer(kms, '127.0.0.1', 0);
  try {
    // The test helpers' SDK transport: the real @alicloud/openapi-client callApi.
    const { openApiClient } = await import('../test/helpers/sdk.js');
    const adminKey = await createAccessKey(kms.deps, { role: 'admin' }, systemCaller);
    const call = openApiClient(`127.0.0.1:${http.port}`, adminKey);
    const internal = await createInstance(kms.deps, { type: 'HSM', keyQuota: KEYS * 2, qps: 100_000 }, systemCaller);
    const wrapped = await createInstance(kms.deps, { type: 'HSM', keyQuota: KEYS * 2, qps: 100_000, keyStorageMechanism: 'HsmEncryptedDatabase' }, systemCaller);

    const p11 = acquireModule(MODULE);
    const session = p11.C_OpenSession(findTokenSlot(p11, label), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    measureGcm(p11, session, 'fresh token');
    measureUnwrap(p11, session);

    for (const [name, instance] of [
      ['HsmEncryptedDatabase', wrapped.id],
      ['HsmInternal', internal.id],
    ] as const) {
      let next = 0;
      const start = process.hrtime.bigint();
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next++ < KEYS) await call('CreateKey', { DKMSInstanceId: instance });
        }),
      );
      record(`CreateKey through the SDK, ${name}, 16 concurrent (${KEYS} keys)`, KEYS, Number(process.hrtime.bigint() - start) / 1e9);
    }
    const tokenObjects = findObjects(p11, session, [{ type: pkcs11js.CKA_TOKEN, value: true }]).length;
    measureGcm(p11, session, `token holding ${tokenObjects} objects`);
    p11.C_CloseSession(session);
    releaseModule(MODULE);

    console.log(`\nSoftHSM2 (${kms.deps.hsm.info().library}), ${new Date().toISOString()}\n`);
    const width = Math.max(...rows.map((r) => r.what.length));
    for (const row of rows) console.log(`${row.what.padEnd(width)}  ${row.rate.padStart(10)}`);
  } finally {
    await http.close();
    await kms.jobs.close();
    await kms.close();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
