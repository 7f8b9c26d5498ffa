/**
 * Child process of `npm run bench`: the limits the service is measured against, on one thread,
 * synchronously, with nothing around them — raw pkcs11js AES-256-GCM over 64 bytes under a
 * token object and under a session object, node:crypto AES-256-GCM over 64 bytes, and
 * RSA-2048 OAEP-SHA1 C_UnwrapKey (what ImportKeyMaterial pays in the token).
 *
 * Env: SOFTHSM2_CONF, BENCH_TOKEN_LABEL, BENCH_PIN_FILE, BENCH_SECONDS_PER_RATE, BENCH_RESULT_FILE
 * (JSON written there: ops/s per measurement).
 */
import { constants, createCipheriv, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import pkcs11js from 'pkcs11js';
import { aesGcm, aesKeyGen, aesKeyTemplate, rsaKeyPairGen, unwrapMechanism, wrappingKeyPairTemplates } from '../../src/hsm/pkcs11/mechanisms.js';

const MODULE = process.env.KMS_PKCS11_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';
const seconds = Number(process.env.BENCH_SECONDS_PER_RATE ?? 1);
const label = process.env.BENCH_TOKEN_LABEL ?? '';
const resultFile = process.env.BENCH_RESULT_FILE ?? '';

/** Runs `op` for `seconds` and answers ops/s. */
function rate(op: () => void): number {
  for (let i = 0; i < 50; i++) op(); // warm-up
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  let count = 0;
  let now = start;
  while (now < end) {
    for (let i = 0; i < 20; i++) op();
    count += 20;
    now = process.hrtime.bigint();
  }
  return count / (Number(now - start) / 1e9);
}

function main(): void {
  const p11 = new pkcs11js.PKCS11();
  p11.load(MODULE);
  p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  const created: pkcs11js.Handle[] = [];
  let session: pkcs11js.Handle | undefined;
  try {
    const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === label);
    if (slot === undefined) throw new Error(`no token labelled ${label}`);
    session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    p11.C_Login(session, pkcs11js.CKU_USER, readFileSync(process.env.BENCH_PIN_FILE ?? '', 'utf8').trim());
    const s = session;
    const plaintext = randomBytes(64);
    const out = Buffer.alloc(64 + 16);

    const gcmUnder = (key: pkcs11js.Handle) => () => {
      p11.C_EncryptInit(s, aesGcm(randomBytes(12), undefined), key);
      p11.C_Encrypt(s, plaintext, out);
    };
    const tokenKey = p11.C_GenerateKey(s, aesKeyGen, aesKeyTemplate({ token: true, id: `bench-raw-${process.pid}`, valueLength: 32 }));
    created.push(tokenKey);
    const sessionKey = p11.C_GenerateKey(s, aesKeyGen, aesKeyTemplate({ token: false, valueLength: 32 }));
    const pkcs11TokenObject = rate(gcmUnder(tokenKey));
    const pkcs11SessionObject = rate(gcmUnder(sessionKey));

    const material = randomBytes(32);
    const nodeCrypto = rate(() => {
      const cipher = createCipheriv('aes-256-gcm', material, randomBytes(12));
      cipher.update(plaintext);
      cipher.final();
      cipher.getAuthTag();
    });

    // The wrapping pair as the service makes it: private half a token object, OAEP-SHA1 unwrap.
    const templates = wrappingKeyPairTemplates(`bench-raw-rsa-${process.pid}`, false, true);
    const pair = p11.C_GenerateKeyPair(s, rsaKeyPairGen, templates.publicTemplate, templates.privateTemplate);
    created.push(pair.privateKey, pair.publicKey);
    const [modulus, exponent] = p11.C_GetAttributeValue(s, pair.publicKey, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
    const publicKey = createPublicKey({
      key: { kty: 'RSA', n: (modulus?.value as Buffer).toString('base64url'), e: (exponent?.value as Buffer).toString('base64url') },
      format: 'jwk',
    });
    const wrapped = Array.from({ length: 64 }, () =>
      publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, randomBytes(32)),
    );
    let next = 0;
    const rsaUnwrap = rate(() => {
      const key = p11.C_UnwrapKey(s, unwrapMechanism('RSAES_OAEP_SHA_1'), pair.privateKey, wrapped[next++ % wrapped.length]!, aesKeyTemplate({ token: false }));
      p11.C_DestroyObject(s, key);
    });

    writeFileSync(resultFile, JSON.stringify({ pkcs11TokenObject, pkcs11SessionObject, nodeCrypto, rsaUnwrap }));
  } finally {
    if (session !== undefined) {
      for (const handle of created) {
        try {
          p11.C_DestroyObject(session, handle);
        } catch {
          // a session object may already be gone
        }
      }
      p11.C_CloseSession(session);
    }
    p11.C_Finalize();
  }
}

main();
