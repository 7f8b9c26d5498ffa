/**
 * Version keys in the token, by spec (hsm.ts `VersionKeySpec`): generation with the
 * protection read back, lookup, destruction, and the asymmetric operations — signing a
 * digest, RSA-OAEP decryption (native or DESIGN.md's host fallback), the public half, and
 * HMAC with a generic-secret version key (MAC keys).
 * AES-GCM with a version key stays in pkcs11-hsm.ts, beside the root key's.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import {
  type AsymmetricEncryptionAlgorithm,
  SHA256_DIGEST_INFO_PREFIX,
  type SigningAlgorithm,
  ecdsaDerToRaw,
  ecdsaRawToDer,
  oaepHash,
} from '../../domain/asymmetric.js';
import { KmsError, internalFailure, invalidCiphertext, unavailable } from '../../domain/errors.js';
import { CURVE_OID_DER, CURVE_ORDER_BYTES, type EcCurve, MAC_HASH_BYTES, type MacHash } from '../../domain/key-spec.js';
import type { HsmCapabilities, VersionKeySpec } from '../hsm.js';
import { rawRsaOaepDecrypt } from './byok-unwrap.js';
import { isGeneralError, pkcs11Code, translatePkcs11Error } from './errors.js';
import * as m from './mechanisms.js';
import { type ObjectHandleCache, RESEARCH_BACKOFF_MS, type SessionRunner } from './object-cache.js';
import { findObjects } from './object-inventory.js';
import { assertUnreadable } from './protection.js';
import { retryingTransientTokenFailure } from './token-object-retry.js';
import { ecPublicKeyDer, rsaPublicKeyDer } from './public-keys.js';

type Handle = pkcs11js.Handle;

/** Cache keys: a secret key is cached under its version id (as before), a pair's halves apart. */
const privateHalf = (versionId: string) => `private:${versionId}`;

/** Largest signature out of the token: RSA-3072 is 384 bytes; ECDSA r ‖ s on a 256-bit curve 64. */
const SIGNATURE_BUFFER_BYTES = 512;

/** Result codes that mean "this signature does not verify", not a broken token. */
const SIGNATURE_REJECTED = new Set<number>([
  pkcs11js.CKR_SIGNATURE_INVALID,
  pkcs11js.CKR_SIGNATURE_LEN_RANGE,
  pkcs11js.CKR_DATA_LEN_RANGE,
  pkcs11js.CKR_DATA_INVALID,
]);

/** Issue 19: not found after the bounded re-search (object-cache.ts) → a retryable 503, never a 500. */
const missingMaterial = () =>
  unavailable('The key material of this version was not found in the HSM yet (another node may have just created it); retry.');

export class VersionKeys {
  /** DER SPKI per version: public, immutable, so cached for the process's life. */
  private readonly publicKeys = new Map<string, Buffer>();

  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly run: SessionRunner,
    private readonly cache: ObjectHandleCache,
    private readonly capabilities: HsmCapabilities,
    private readonly importStrict: boolean,
  ) {}

  supports(spec: VersionKeySpec): boolean {
    const caps = this.capabilities;
    switch (spec.kind) {
      case 'aes':
        return caps.aesGcm;
      case 'hmac':
        // Probed per hash (capabilities.ts), never assumed from the mechanism list.
        return { sha224: caps.hmacSha224, sha256: caps.hmacSha256, sha384: caps.hmacSha384, sha512: caps.hmacSha512 }[spec.hash];
      case 'rsa':
        return true;
      case 'ec':
        // SM2: a key on the curve is not enough — SM2DSA and SM2PKE are vendor mechanisms
        // (PKCS#11 defines none) that no token we know of has been probed for. Refused.
        return spec.curve === 'P-256' ? caps.ecdsaP256 : spec.curve === 'secp256k1' ? caps.ecdsaSecp256k1 : false;
    }
  }

  async generate(versionId: string, spec: VersionKeySpec): Promise<void> {
    if (!this.supports(spec)) throw internalFailure(`The HSM cannot generate ${spec.kind} keys of this spec.`);
    if (spec.kind === 'aes') {
      const handle = await this.run('generateVersionKey', async (session) => {
        const key = await retryingTransientTokenFailure(this.p11, session, versionId, () =>
          this.p11.C_GenerateKeyAsync(session, m.aesKeyGen, m.aesKeyTemplate({ token: true, id: versionId, label: versionId, valueLength: spec.bits / 8 })),
        );
        assertUnreadable(this.p11, session, key);
        return key;
      });
      this.cache.set(versionId, handle);
      return;
    }
    if (spec.kind === 'hmac') {
      const handle = await this.run('generateVersionKey', async (session) => {
        const key = await retryingTransientTokenFailure(this.p11, session, versionId, () =>
          this.p11.C_GenerateKeyAsync(session, m.genericSecretKeyGen, m.hmacKeyTemplate({ token: true, id: versionId, valueLength: MAC_HASH_BYTES[spec.hash] })),
        );
        assertUnreadable(this.p11, session, key);
        return key;
      });
      // Secret keys of every kind are cached under the bare version id (`has`, `mac`).
      this.cache.set(versionId, handle);
      return;
    }
    const shape: m.KeyPairShape =
      spec.kind === 'rsa' ? { kind: 'rsa', bits: spec.bits, use: spec.use } : { kind: 'ec', params: CURVE_OID_DER[spec.curve] };
    const { publicTemplate, privateTemplate } = m.versionKeyPairTemplates(versionId, shape);
    const mechanism = spec.kind === 'rsa' ? m.rsaKeyPairGen : m.ecKeyPairGen;
    const privateKey = await this.run('generateVersionKeyPair', async (session) => {
      const pair = await retryingTransientTokenFailure(this.p11, session, versionId, () =>
        this.p11.C_GenerateKeyPairAsync(session, mechanism, publicTemplate, privateTemplate),
      );
      assertUnreadable(this.p11, session, pair.privateKey, [pair.privateKey, pair.publicKey]);
      this.publicKeys.set(versionId, spec.kind === 'rsa' ? rsaPublicKeyDer(this.p11, session, pair.publicKey) : ecPublicKeyDer(this.p11, session, pair.publicKey, spec.curve));
      return pair.privateKey;
    });
    this.cache.set(privateHalf(versionId), privateKey);
  }

  /** Whether the version has its secret key or its private half in the token. */
  async has(versionId: string): Promise<boolean> {
    // Asked of the token, not the cache: another process may have destroyed the object.
    if ((await this.cache.refresh(versionId, m.secretKeyById(versionId))) !== undefined) return true;
    if ((await this.cache.refresh(privateHalf(versionId), m.privateKeyById(versionId))) !== undefined) return true;
    // "No" from a token view that no longer changes is no answer (object-cache.ts StaleTokenView).
    await this.cache.assertTokenView();
    return false;
  }

  /** Destroys every token object whose CKA_ID is the version id: a secret key, or both halves of a pair. */
  async destroy(versionId: string): Promise<boolean> {
    this.cache.forget(versionId);
    this.cache.forget(privateHalf(versionId));
    this.publicKeys.delete(versionId);
    const destroyed = await this.run('destroyVersionKey', (session) => {
      const found = findObjects(this.p11, session, [
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_ID, value: Buffer.from(versionId, 'utf8') },
      ]);
      for (const handle of found) this.p11.C_DestroyObject(session, handle);
      return found.length > 0;
    });
    // Nothing found in a token view that no longer changes would leave another process's object behind.
    if (!destroyed) await this.cache.assertTokenView();
    return destroyed;
  }

  async publicKey(versionId: string): Promise<Buffer> {
    const cached = this.publicKeys.get(versionId);
    if (cached) return cached;
    // Patient, as object-cache.ts's lookups (issue 19): a pair made a moment ago by another
    // process may not be visible here yet.
    for (const delayMs of [0, ...RESEARCH_BACKOFF_MS]) {
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      const der = await this.run('publicKey', (session) => this.readPublicKey(session, versionId));
      if (der !== undefined) {
        this.publicKeys.set(versionId, der);
        return der;
      }
    }
    throw missingMaterial();
  }

  private readPublicKey(session: Handle, versionId: string): Buffer | undefined {
    // The key type is matched in the search rather than read: a CK_ULONG comes back as
    // native-endian bytes of the platform's width.
    const [rsa] = findObjects(this.p11, session, [...m.publicKeyById(versionId), { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA }]);
    if (rsa !== undefined) return rsaPublicKeyDer(this.p11, session, rsa);
    const [handle] = findObjects(this.p11, session, [...m.publicKeyById(versionId), { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC }]);
    if (handle === undefined) return undefined;
    const [params] = this.p11.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_EC_PARAMS }]);
    return ecPublicKeyDer(this.p11, session, handle, curveOf(params?.value));
  }

  async sign(versionId: string, algorithm: SigningAlgorithm, digest: Buffer): Promise<Buffer> {
    return this.withPrivateHalf(versionId, (key) => this.run('sign', (session) => signDigest(this.p11, session, key, algorithm, digest)));
  }

  /**
   * SOFTWARE tier (hsm.ts): a session object, sensitive and non-extractable, made from the
   * unsealed PKCS#8 and destroyed in the same call. (The JWK strings node:crypto hands out
   * cannot be zeroed; the Buffers are.)
   */
  async signWithKeyMaterial(privateKeyPkcs8: Buffer, algorithm: SigningAlgorithm, digest: Buffer): Promise<Buffer> {
    const template = sessionPrivateKeyTemplate(privateKeyPkcs8, algorithm);
    try {
      return await this.run('signWithKeyMaterial', async (session) => {
        const key = this.p11.C_CreateObject(session, template);
        try {
          return await signDigest(this.p11, session, key, algorithm, digest);
        } finally {
          this.p11.C_DestroyObject(session, key);
        }
      });
    } finally {
      for (const attribute of template) if (Buffer.isBuffer(attribute.value)) attribute.value.fill(0);
    }
  }

  /**
   * Verifies a signature over a SHA-256 digest with a public key (DER SPKI) in the token, as
   * a transient session object: node:crypto can only verify over a message it hashes itself.
   * Used for both tiers; the public key is no secret. A malformed signature is `false`.
   */
  async verifyWithPublicKey(publicKeyDer: Buffer, algorithm: SigningAlgorithm, digest: Buffer, signature: Buffer): Promise<boolean> {
    const jwk = createPublicKey({ key: publicKeyDer, format: 'der', type: 'spki' }).export({ format: 'jwk' });
    let template: pkcs11js.Template;
    let input = signature;
    let data = digest;
    let mechanism: pkcs11js.Mechanism;
    const common: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_VERIFY, value: true },
    ];
    if (jwk.kty === 'RSA' && algorithm !== 'ECDSA_SHA_256') {
      template = [
        ...common,
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA },
        { type: pkcs11js.CKA_MODULUS, value: Buffer.from(jwk.n ?? '', 'base64url') },
        { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from(jwk.e ?? '', 'base64url') },
      ];
      mechanism = algorithm === 'RSA_PSS_SHA_256' ? m.rsaPssSha256 : m.rsaPkcs;
      if (algorithm === 'RSA_PKCS1_SHA_256') data = Buffer.concat([SHA256_DIGEST_INFO_PREFIX, digest]);
    } else if (jwk.kty === 'EC' && algorithm === 'ECDSA_SHA_256' && (jwk.crv === 'P-256' || jwk.crv === 'secp256k1')) {
      const curve: EcCurve = jwk.crv;
      const raw = ecdsaDerToRaw(signature, CURVE_ORDER_BYTES[curve]);
      if (raw === undefined) return false;
      input = raw;
      const point = Buffer.concat([Buffer.from([0x04]), Buffer.from(jwk.x ?? '', 'base64url'), Buffer.from(jwk.y ?? '', 'base64url')]);
      template = [
        ...common,
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
        { type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(CURVE_OID_DER[curve]) },
        // PKCS#11 v2.40: CKA_EC_POINT is the DER OCTET STRING of the point.
        { type: pkcs11js.CKA_EC_POINT, value: Buffer.concat([Buffer.from([0x04, point.length]), point]) },
      ];
      mechanism = m.ecdsa;
    } else {
      throw internalFailure('The public key does not match the signing algorithm.');
    }
    return this.run('verify', async (session) => {
      const key = this.p11.C_CreateObject(session, template);
      try {
        this.p11.C_VerifyInit(session, mechanism, key);
        return await this.p11.C_VerifyAsync(session, data, input);
      } catch (error) {
        const code = pkcs11Code(error);
        if (code !== undefined && SIGNATURE_REJECTED.has(code)) return false;
        throw error;
      } finally {
        this.p11.C_DestroyObject(session, key);
      }
    });
  }

  decryptionPath(algorithm: AsymmetricEncryptionAlgorithm): 'native' | 'host-oaep-decode' | undefined {
    const caps = this.capabilities;
    if (algorithm === 'RSAES_OAEP_SHA_1' ? caps.oaepSha1Decrypt : caps.oaepSha256Decrypt) return 'native';
    // DESIGN.md, as for BYOK import: OAEP-SHA256 only, and never in strict mode (KMS_IMPORT_STRICT).
    if (algorithm === 'RSAES_OAEP_SHA_256' && !this.importStrict && caps.rsaX509) return 'host-oaep-decode';
    return undefined;
  }

  async decrypt(versionId: string, algorithm: AsymmetricEncryptionAlgorithm, ciphertext: Buffer): Promise<Buffer> {
    const publicKeyDer = await this.publicKey(versionId);
    return this.decryptWith(publicKeyDer, algorithm, ciphertext, (fn) => this.withPrivateHalf(versionId, fn));
  }

  /**
   * RSA-OAEP decryption with whichever private half `withKey` lends (a token object, or an
   * unwrapped HsmEncryptedDatabase session object); `publicKeyDer` gives the modulus length.
   */
  async decryptWith(
    publicKeyDer: Buffer,
    algorithm: AsymmetricEncryptionAlgorithm,
    ciphertext: Buffer,
    withKey: (fn: (key: Handle) => Promise<Buffer>) => Promise<Buffer>,
  ): Promise<Buffer> {
    const path = this.decryptionPath(algorithm);
    if (path === undefined) throw new KmsError('Rejected.UnsupportedOperation', `Unsupported operation. This HSM cannot decrypt ${algorithm} (strict mode refuses the host OAEP decoding).`);
    const modulusBytes = (createPublicKey({ key: publicKeyDer, format: 'der', type: 'spki' }).asymmetricKeyDetails?.modulusLength ?? 0) / 8;
    // No oracle: a wrong length, bad padding or a token refusal are all the same InvalidCiphertext.
    if (ciphertext.length !== modulusBytes) throw invalidCiphertext();
    return withKey((key) =>
      this.run('asymmetricDecrypt', async (session) => {
        try {
          if (path === 'native') {
            this.p11.C_DecryptInit(session, m.oaepDecrypt(oaepHash(algorithm)), key);
            return Buffer.from(await this.p11.C_DecryptAsync(session, ciphertext, Buffer.alloc(modulusBytes)));
          }
          return await rawRsaOaepDecrypt(this.p11, session, key, ciphertext, modulusBytes, oaepHash(algorithm));
        } catch (error) {
          if (isGeneralError(error)) throw invalidCiphertext();
          const translated = translatePkcs11Error(error, 'asymmetricDecrypt');
          // A key handle gone stale (says nothing about the ciphertext): the handle caches look it up again.
          if (isStaleHandle(error)) throw translated;
          if (translated.kind === 'unavailable') throw translated;
          throw invalidCiphertext();
        }
      }),
    );
  }

  /**
   * HMAC of `message` with the version's generic-secret key, in the token. Any secret key
   * found by CKA_ID is tried: an AES key would fail CKR_KEY_TYPE_INCONSISTENT, which the
   * usage table keeps from ever happening.
   */
  async mac(versionId: string, hash: MacHash, message: Buffer): Promise<Buffer> {
    return this.cache.withObject(versionId, m.secretKeyById(versionId), missingMaterial, (key) => this.macWithHandle(key, hash, message));
  }

  /** HMAC with any generic-secret key handle (token object, or an unwrapped HsmEncryptedDatabase session object). */
  macWithHandle(key: Handle, hash: MacHash, message: Buffer): Promise<Buffer> {
    return this.run('mac', async (session) => {
      this.p11.C_SignInit(session, m.hmacMechanism(hash), key);
      return Buffer.from(await this.p11.C_SignAsync(session, message, Buffer.alloc(MAC_HASH_BYTES[hash])));
    });
  }

  private withPrivateHalf<T>(versionId: string, fn: (key: Handle) => Promise<T>): Promise<T> {
    return this.cache.withObject(privateHalf(versionId), m.privateKeyById(versionId), missingMaterial, fn);
  }
}

const isStaleHandle = (error: unknown): boolean => {
  const code = pkcs11Code(error);
  return code === pkcs11js.CKR_KEY_HANDLE_INVALID || code === pkcs11js.CKR_OBJECT_HANDLE_INVALID;
};

/** Signs a SHA-256 digest; the result is what openssl verifies (DER for ECDSA). */
export async function signDigest(
  p11: pkcs11js.PKCS11,
  session: Handle,
  key: Handle,
  algorithm: SigningAlgorithm,
  digest: Buffer,
): Promise<Buffer> {
  switch (algorithm) {
    case 'RSA_PKCS1_SHA_256':
      p11.C_SignInit(session, m.rsaPkcs, key);
      return Buffer.from(await p11.C_SignAsync(session, Buffer.concat([SHA256_DIGEST_INFO_PREFIX, digest]), Buffer.alloc(SIGNATURE_BUFFER_BYTES)));
    case 'RSA_PSS_SHA_256':
      p11.C_SignInit(session, m.rsaPssSha256, key);
      return Buffer.from(await p11.C_SignAsync(session, digest, Buffer.alloc(SIGNATURE_BUFFER_BYTES)));
    case 'ECDSA_SHA_256':
      p11.C_SignInit(session, m.ecdsa, key);
      return ecdsaRawToDer(Buffer.from(await p11.C_SignAsync(session, digest, Buffer.alloc(SIGNATURE_BUFFER_BYTES))));
  }
}

function curveOf(params: unknown): EcCurve {
  if (Buffer.isBuffer(params)) {
    for (const [curve, oid] of Object.entries(CURVE_OID_DER) as Array<[EcCurve, Buffer]>) if (oid.equals(params)) return curve;
  }
  throw internalFailure('The token holds an EC key on an unknown curve.');
}

/** A transient signing key (session object) from PKCS#8 DER: RSA CRT components, or EC params and d. */
function sessionPrivateKeyTemplate(pkcs8: Buffer, algorithm: SigningAlgorithm): pkcs11js.Template {
  const jwk = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' });
  const b = (value: string | undefined): Buffer => {
    if (value === undefined) throw internalFailure('The sealed private key is incomplete.');
    return Buffer.from(value, 'base64url');
  };
  const common: pkcs11js.Template = [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_SIGN, value: true },
  ];
  if (jwk.kty === 'RSA') {
    if (algorithm === 'ECDSA_SHA_256') throw internalFailure('An RSA key cannot sign with ECDSA.');
    return [
      ...common,
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA },
      { type: pkcs11js.CKA_MODULUS, value: b(jwk.n) },
      { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: b(jwk.e) },
      { type: pkcs11js.CKA_PRIVATE_EXPONENT, value: b(jwk.d) },
      { type: pkcs11js.CKA_PRIME_1, value: b(jwk.p) },
      { type: pkcs11js.CKA_PRIME_2, value: b(jwk.q) },
      { type: pkcs11js.CKA_EXPONENT_1, value: b(jwk.dp) },
      { type: pkcs11js.CKA_EXPONENT_2, value: b(jwk.dq) },
      { type: pkcs11js.CKA_COEFFICIENT, value: b(jwk.qi) },
    ];
  }
  const curve: EcCurve | undefined = jwk.crv === 'P-256' ? 'P-256' : jwk.crv === 'secp256k1' ? 'secp256k1' : undefined;
  if (curve === undefined || algorithm !== 'ECDSA_SHA_256') throw internalFailure('Unsupported sealed private key.');
  return [
    ...common,
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
    { type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(CURVE_OID_DER[curve]) },
    { type: pkcs11js.CKA_VALUE, value: b(jwk.d) },
  ];
}
