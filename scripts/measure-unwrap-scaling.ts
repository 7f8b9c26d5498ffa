/**
 * Issue 16's 100,000-version row, the HSM half in isolation: what one LRU miss of
 * unwrapped-key-cache.ts costs on this machine's SoftHSM2 (C_UnwrapKey AES-KWP under the master
 * into a session object, the protection read back, C_DestroyObject of the evicted object, then
 * one AES-GCM 64 B with the new object), with L session objects alive, and what the process's
 * RSS does over many such misses. A hit (GCM on a live object) for comparison.
 *
 *   npx tsx scripts/measure-unwrap-scaling.ts [--live 100,4096,20000] [--misses 20000]
 * Its own token in a temp dir; prints one table; no pass/fail.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pkcs11js from 'pkcs11js';
import { MASTER_WRAPPING_KEY_ID, ensureMasterWrappingKey } from '../src/hsm/pkcs11/master-key.js';
import * as m from '../src/hsm/pkcs11/mechanisms.js';
import { acquireModule, findTokenSlot, login, releaseModule } from '../src/hsm/pkcs11/module.js';
import { findObjects } from '../src/hsm/pkcs11/object-inventory.js';
import { isUnreadable } from '../src/hsm/pkcs11/protection.js';
import { wrappableTemplate } from '../src/hsm/pkcs11/wrapped-keys.js';
import { provisionSoftHsmToken } from '../src/hsm/provision.js';

const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const LIVE = arg('--live', '100,4096,20000').split(',').map(Number);
const MISSES = Number(arg('--misses', '20000'));
const HITS = 20_000;

const unwrapTemplate = (id: string): pkcs11js.Template => [
  ...wrappableTemplate('aes', id).filter((a) => a.type !== pkcs11js.CKA_EXTRACTABLE && a.type !== pkcs11js.CKA_WRAP_WITH_TRUSTED && a.type !== pkcs11js.CKA_LABEL),
  { type: pkcs11js.CKA_EXTRACTABLE, value: false },
];

const rssMiB = () => Math.round(process.memoryUsage().rss / 2 ** 20);

async function main(): Promise<void> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-unwrap-scaling-'));
  const label = 'unwrap-scaling';
  const userPin = randomBytes(8).toString('hex');
  const soPin = randomBytes(8).toString('hex');
  try {
    await provisionSoftHsmToken({ dataDir, tokenLabel: label, userPin, soPin, log: () => undefined });
    await ensureMasterWrappingKey({ modulePath: MODULE, tokenLabel: label, userPin, soPin });
    const p11 = acquireModule(MODULE);
    const session = p11.C_OpenSession(findTokenSlot(p11, label), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    login(p11, session, userPin);
    const [master] = findObjects(p11, session, m.secretKeyById(MASTER_WRAPPING_KEY_ID));
    const fresh = p11.C_GenerateKey(session, m.aesKeyGen, wrappableTemplate('aes', 'v', 32));
    const blob = Buffer.from(p11.C_WrapKey(session, m.aesKeyWrapPad, master!, fresh, Buffer.alloc(4096)));
    p11.C_DestroyObject(session, fresh);
    const plaintext = randomBytes(64);
    const out = Buffer.alloc(80);
    const gcm = (key: pkcs11js.Handle) => {
      p11.C_EncryptInit(session, m.aesGcm(randomBytes(12), undefined), key);
      p11.C_Encrypt(session, plaintext, out);
    };
    const rows: string[] = [];
    for (const live of LIVE) {
      const rssBefore = rssMiB();
      const lru: pkcs11js.Handle[] = [];
      let start = process.hrtime.bigint();
      for (let i = 0; i < live; i++) lru.push(p11.C_UnwrapKey(session, m.aesKeyWrapPad, master!, blob, unwrapTemplate(`v${i}`)));
      const fillS = Number(process.hrtime.bigint() - start) / 1e9;
      const rssFilled = rssMiB();
      start = process.hrtime.bigint();
      for (let i = 0; i < HITS; i++) gcm(lru[i % live]!);
      const hitS = Number(process.hrtime.bigint() - start) / 1e9;
      start = process.hrtime.bigint();
      for (let i = 0; i < MISSES; i++) {
        const handle = p11.C_UnwrapKey(session, m.aesKeyWrapPad, master!, blob, unwrapTemplate(`m${i}`));
        if (!isUnreadable(p11, session, handle)) throw new Error('readable');
        lru.push(handle);
        p11.C_DestroyObject(session, lru.shift()!);
        gcm(handle);
      }
      const missS = Number(process.hrtime.bigint() - start) / 1e9;
      const rssAfter = rssMiB();
      for (const handle of lru) p11.C_DestroyObject(session, handle);
      rows.push(
        `${String(live).padStart(6)} live | fill ${Math.round(live / fillS).toLocaleString('en')}/s | hit (GCM) ${Math.round(HITS / hitS).toLocaleString('en')}/s | ` +
          `miss (unwrap+check+destroy+GCM) ${Math.round(MISSES / missS).toLocaleString('en')}/s | RSS ${rssBefore} → ${rssFilled} (filled) → ${rssAfter} MiB after ${MISSES} misses`,
      );
    }
    p11.C_CloseSession(session);
    releaseModule(MODULE);
    console.log(`SoftHSM2, ${new Date().toISOString()}, load ${(await import('node:os')).loadavg()[0]!.toFixed(1)}`);
    for (const row of rows) console.log(row);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
