import { createPublicKey, randomBytes as nodeRandomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { KmsError, internalFailure, invalidCiphertext, invalidKeyMaterial } from '../../domain/errors.js';
import { decodeOaep } from '../../domain/oaep.js';
import type {
  AesGcmSealed,
  Hsm,
  HsmCapabilities,
  HsmInfo,
  HsmObjectIds,
  ImportUnwrapRequest,
  ImportUnwrapResult,
  UnwrapPath,
  WrappingAlgorithm,
} from '../hsm.js';
import { probeCapabilities } from './capabilities.js';
import { pkcs11Code, translatePkcs11Error } from './errors.js';
import * as m from './mechanisms.js';
import { acquireModule, findTokenSlot, login, releaseModule } from './module.js';
import { findObjects, listObjectIdsOfClass } from './object-inventory.js';
import { SessionPool } from './session-pool.js';

type Handle = pkcs11js.Handle;

export interface Pkcs11HsmOptions {
  modulePath: string;
  tokenLabel: string;
  /** The user PIN; used once to log in and not kept. */
  pin: string;
  sessions: number;
  /** Refuse host-side OAEP decoding when the token lacks the mechanism. */
  importStrict: boolean;
}

/** CKA_IDs of the service's own keys, created by `kms hsm init` (or at first start). */
export const ROOT_KEY_ID = 'hsm-kms:root';
export const TOKEN_MAC_KEY_ID = 'hsm-kms:token-mac';

/** Fixed block whose MAC under a candidate key identifies the material without revealing it. */
const FINGERPRINT_BLOCK = Buffer.from('hsm-kms:material', 'ascii'); // 16 bytes
const GCM_IV_BYTES = 12;
const GCM_TAG_BYTES = 16;
const RSA_MODULUS_BYTES = 256;


/** Result codes that mean "the tag or data did not verify", as opposed to a broken token. */
const DECRYPT_REJECTED = new Set<number>([
  pkcs11js.CKR_ENCRYPTED_DATA_INVALID,
  pkcs11js.CKR_ENCRYPTED_DATA_LEN_RANGE,
  pkcs11js.CKR_GENERAL_ERROR,
  pkcs11js.CKR_FUNCTION_FAILED,
]);

/**
 * The PKCS#11 adapter: a session pool over one logged-in token, object handles cached per
 * process (SoftHSM2 searches linearly, ~230 ms with 20,000 objects: never on the hot path),
 * and a capability probe run at start.
 */
export class Pkcs11Hsm implements Hsm {
  private readonly handles = new Map<string, Handle>();
  private closed = false;

  private constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly options: Pkcs11HsmOptions,
    private readonly loginSession: Handle,
    private readonly pool: SessionPool,
    private readonly hsmInfo: HsmInfo,
    private readonly rootKey: Handle,
    private readonly macKey: Handle,
  ) {}

  static async open(options: Pkcs11HsmOptions): Promise<Pkcs11Hsm> {
    const p11 = acquireModule(options.modulePath);
    try {
      const slot = findTokenSlot(p11, options.tokenLabel);
      // Login is per application: one session logged in makes every session of ours a user session.
      const loginSession = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      login(p11, loginSession, options.pin);
      const pool = new SessionPool(p11, slot, options.sessions);
      const { rootKey, macKey } = await pool.use((session) => ensureServiceKeys(p11, session));
      const capabilities = await pool.use((session) => probeCapabilities(p11, session));
      const libInfo = p11.C_GetInfo();
      const tokenInfo = p11.C_GetTokenInfo(slot);
      const info: HsmInfo = {
        modulePath: options.modulePath,
        manufacturer: libInfo.manufacturerID.trim(),
        library: `${libInfo.libraryDescription.trim()} ${libInfo.libraryVersion.major}.${libInfo.libraryVersion.minor}`,
        tokenLabel: tokenInfo.label.trim(),
        tokenModel: tokenInfo.model.trim(),
        capabilities,
      };
      return new Pkcs11Hsm(p11, options, loginSession, pool, info, rootKey, macKey);
    } catch (error) {
      releaseModule(options.modulePath);
      throw translatePkcs11Error(error, 'open');
    }
  }

  info(): HsmInfo {
    return this.hsmInfo;
  }

  // ---- version keys (HSM tier) -------------------------------------------------------------

  async generateVersionKey(versionId: string, bits: 128 | 192 | 256): Promise<void> {
    const handle = await this.run('generateVersionKey', (session) =>
      this.p11.C_GenerateKeyAsync(
        session,
        m.aesKeyGen,
        m.aesKeyTemplate({ token: true, id: versionId, label: versionId, valueLength: bits / 8 }),
      ),
    );
    this.handles.set(versionId, handle);
  }

  async hasVersionKey(versionId: string): Promise<boolean> {
    return (await this.findSecretKey(versionId)) !== undefined;
  }

  async destroyVersionKey(versionId: string): Promise<boolean> {
    this.handles.delete(versionId);
    return this.run('destroyVersionKey', (session) => {
      const found = findObjects(this.p11, session, m.secretKeyById(versionId));
      for (const handle of found) this.p11.C_DestroyObject(session, handle);
      return found.length > 0;
    });
  }

  async encryptWithVersionKey(versionId: string, plaintext: Buffer, aad: Buffer | undefined): Promise<AesGcmSealed> {
    return this.withVersionKey(versionId, (key) => this.gcmEncrypt(key, plaintext, aad));
  }

  async decryptWithVersionKey(versionId: string, sealed: AesGcmSealed, aad: Buffer | undefined): Promise<Buffer> {
    return this.withVersionKey(versionId, (key) => this.gcmDecrypt(key, sealed, aad));
  }

  async fingerprintVersionKey(versionId: string): Promise<Buffer> {
    return this.withVersionKey(versionId, (key) => this.run('fingerprint', (session) => this.fingerprint(session, key)));
  }

  // ---- reconciliation -----------------------------------------------------------------------

  async listObjectIds(): Promise<HsmObjectIds> {
    return this.run('listObjectIds', (session) => ({
      secretKeys: listObjectIdsOfClass(this.p11, session, pkcs11js.CKO_SECRET_KEY),
      wrappingPairs: listObjectIdsOfClass(this.p11, session, pkcs11js.CKO_PRIVATE_KEY),
    }));
  }

  // ---- service keys ------------------------------------------------------------------------

  async sealWithRootKey(plaintext: Buffer, aad?: Buffer): Promise<Buffer> {
    const sealed = await this.gcmEncrypt(this.rootKey, plaintext, aad);
    return Buffer.concat([sealed.iv, sealed.ciphertext, sealed.tag]);
  }

  async unsealWithRootKey(blob: Buffer, aad?: Buffer): Promise<Buffer> {
    if (blob.length < GCM_IV_BYTES + GCM_TAG_BYTES) throw invalidCiphertext();
    return this.gcmDecrypt(
      this.rootKey,
      {
        iv: blob.subarray(0, GCM_IV_BYTES),
        ciphertext: blob.subarray(GCM_IV_BYTES, blob.length - GCM_TAG_BYTES),
        tag: blob.subarray(blob.length - GCM_TAG_BYTES),
      },
      aad,
    );
  }

  async macWithTokenKey(data: Buffer): Promise<Buffer> {
    return this.run('mac', (session) => {
      this.p11.C_SignInit(session, m.sha256Hmac, this.macKey);
      return this.p11.C_SignAsync(session, data, Buffer.alloc(32));
    });
  }

  async randomBytes(length: number): Promise<Buffer> {
    return this.run('random', (session) => this.p11.C_GenerateRandom(session, Buffer.alloc(length)));
  }

  // ---- BYOK --------------------------------------------------------------------------------

  async generateWrappingKeyPair(wrappingKeyId: string): Promise<{ publicKeyDer: Buffer }> {
    const { publicTemplate, privateTemplate } = m.wrappingKeyPairTemplates(wrappingKeyId, !this.options.importStrict);
    return this.run('generateWrappingKeyPair', async (session) => {
      const pair = await this.p11.C_GenerateKeyPairAsync(session, m.rsaKeyPairGen, publicTemplate, privateTemplate);
      try {
        const [modulus, exponent] = this.p11.C_GetAttributeValue(session, pair.publicKey, [
          { type: pkcs11js.CKA_MODULUS },
          { type: pkcs11js.CKA_PUBLIC_EXPONENT },
        ]);
        const publicKeyDer = createPublicKey({
          key: { kty: 'RSA', n: toBase64Url(modulus?.value), e: toBase64Url(exponent?.value) },
          format: 'jwk',
        }).export({ type: 'spki', format: 'der' });
        this.handles.set(wrappingHandleKey(wrappingKeyId), pair.privateKey);
        return { publicKeyDer };
      } finally {
        this.p11.C_DestroyObject(session, pair.publicKey);
      }
    });
  }

  async destroyWrappingKeyPair(wrappingKeyId: string): Promise<void> {
    this.handles.delete(wrappingHandleKey(wrappingKeyId));
    await this.run('destroyWrappingKeyPair', (session) => {
      for (const handle of findObjects(this.p11, session, m.privateKeyById(wrappingKeyId))) {
        this.p11.C_DestroyObject(session, handle);
      }
    });
  }

  supportsWrappingAlgorithm(algorithm: WrappingAlgorithm): boolean {
    return this.unwrapPathFor(algorithm) !== undefined;
  }

  async unwrapImportedMaterial(request: ImportUnwrapRequest): Promise<ImportUnwrapResult> {
    const path = this.unwrapPathFor(request.algorithm);
    if (path === undefined) throw invalidKeyMaterial();
    const privateKey = await this.findPrivateKey(request.wrappingKeyId);
    if (privateKey === undefined) throw invalidKeyMaterial();
    return this.run('unwrapImportedMaterial', async (session) => {
      try {
        return path === 'native'
          ? await this.unwrapNative(session, privateKey, request)
          : await this.unwrapOnHost(session, privateKey, request);
      } catch (error) {
        throw uniformUnwrapError(error);
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pool.close();
    try {
      this.p11.C_CloseSession(this.loginSession);
    } catch {
      // Best effort at shutdown.
    }
    releaseModule(this.options.modulePath);
  }

  // ---- internals ---------------------------------------------------------------------------

  private unwrapPathFor(algorithm: WrappingAlgorithm): UnwrapPath | undefined {
    const caps = this.hsmInfo.capabilities;
    const native: Record<WrappingAlgorithm, boolean> = {
      RSAES_OAEP_SHA_1: caps.oaepSha1Unwrap,
      RSAES_OAEP_SHA_256: caps.oaepSha256Unwrap,
      RSAES_PKCS1_V1_5: caps.pkcs1v15Unwrap,
    };
    if (native[algorithm]) return 'native';
    // DESIGN.md: the host fallback exists for OAEP-SHA256 only, and strict mode refuses it.
    if (algorithm === 'RSAES_OAEP_SHA_256' && !this.options.importStrict && caps.rsaX509) return 'host-oaep-decode';
    return undefined;
  }

  /**
   * Native C_UnwrapKey. SoftHSM2 sets no CKA_VALUE_LEN on an unwrapped AES key and refuses one
   * in the template (CKR_ATTRIBUTE_READ_ONLY), so a 16-byte material would silently become an
   * AES-128 key of an AES-256 spec. The length is therefore measured on a transient twin
   * (unwrapped from the same input, wrapped under the root key with AES-KWP, whose output
   * length gives the key length); the persistent object is unwrapped straight from the RSA
   * ciphertext into a sensitive, non-extractable token key.
   */
  private async unwrapNative(session: Handle, privateKey: Handle, request: ImportUnwrapRequest): Promise<ImportUnwrapResult> {
    const mechanism = m.unwrapMechanism(request.algorithm);
    const host = request.target.kind === 'host';
    const twin = await this.p11.C_UnwrapKeyAsync(
      session,
      mechanism,
      privateKey,
      request.encryptedMaterial,
      m.aesKeyTemplate({ token: false, sign: true, extractable: true, readable: host }),
    );
    let material: Buffer | undefined;
    let fingerprint: Buffer;
    try {
      if (this.measureKeyLength(session, twin) !== request.materialLength) throw invalidKeyMaterial();
      fingerprint = this.fingerprint(session, twin);
      if (host) material = this.readValue(session, twin);
    } finally {
      this.p11.C_DestroyObject(session, twin);
    }
    if (request.target.kind === 'token') {
      const key = await this.p11.C_UnwrapKeyAsync(
        session,
        mechanism,
        privateKey,
        request.encryptedMaterial,
        importedKeyTemplate(request),
      );
      this.handles.set(request.target.versionId, key);
    }
    return { path: 'native', fingerprint, ...(material ? { material } : {}) };
  }

  /**
   * The documented fallback for tokens without OAEP-SHA256 (SoftHSM2 2.6.1): raw RSA inside
   * the token, EME-OAEP decoding on the host in constant time, then C_CreateObject of a
   * sensitive key. Every intermediate buffer is zeroed before returning.
   */
  private async unwrapOnHost(session: Handle, privateKey: Handle, request: ImportUnwrapRequest): Promise<ImportUnwrapResult> {
    if (request.encryptedMaterial.length !== RSA_MODULUS_BYTES) throw invalidKeyMaterial();
    this.p11.C_DecryptInit(session, m.rsaX509, privateKey);
    const raw = await this.p11.C_DecryptAsync(session, request.encryptedMaterial, Buffer.alloc(RSA_MODULUS_BYTES));
    const em = Buffer.alloc(RSA_MODULUS_BYTES);
    raw.copy(em, RSA_MODULUS_BYTES - raw.length);
    raw.fill(0);
    let decoded: Buffer | undefined;
    try {
      decoded = decodeOaep(em, 'sha256');
      if (decoded.length !== request.materialLength) throw invalidKeyMaterial();
      const key = this.p11.C_CreateObject(session, importedKeyTemplate(request, decoded));
      let keep = false;
      try {
        const fingerprint = this.fingerprint(session, key);
        if (request.target.kind === 'token') {
          this.handles.set(request.target.versionId, key);
          keep = true;
        }
        const material = request.target.kind === 'host' ? Buffer.from(decoded) : undefined;
        return { path: 'host-oaep-decode', fingerprint, ...(material ? { material } : {}) };
      } finally {
        if (!keep) this.p11.C_DestroyObject(session, key);
      }
    } finally {
      em.fill(0);
      decoded?.fill(0);
    }
  }

  /** Length in bytes of an extractable AES key: AES-KWP output is 8 bytes longer than the padded key. */
  private measureKeyLength(session: Handle, key: Handle): number {
    const wrapped = this.p11.C_WrapKey(session, m.aesKeyWrapPad, this.rootKey, key, Buffer.alloc(64));
    return wrapped.length - 8;
  }

  private readValue(session: Handle, key: Handle): Buffer {
    const [value] = this.p11.C_GetAttributeValue(session, key, [{ type: pkcs11js.CKA_VALUE }]);
    const raw = value?.value;
    if (!Buffer.isBuffer(raw)) throw invalidKeyMaterial();
    const copy = Buffer.from(raw);
    raw.fill(0);
    return copy;
  }

  private fingerprint(session: Handle, key: Handle): Buffer {
    if (this.hsmInfo.capabilities.aesCmac) {
      this.p11.C_SignInit(session, m.aesCmac, key);
      return Buffer.from(this.p11.C_Sign(session, FINGERPRINT_BLOCK, Buffer.alloc(16)));
    }
    this.p11.C_EncryptInit(session, m.aesEcb, key);
    return Buffer.from(this.p11.C_Encrypt(session, FINGERPRINT_BLOCK, Buffer.alloc(16)));
  }

  private async gcmEncrypt(key: Handle, plaintext: Buffer, aad: Buffer | undefined): Promise<AesGcmSealed> {
    const iv = nodeRandomBytes(GCM_IV_BYTES);
    const out = await this.run('encrypt', (session) => {
      this.p11.C_EncryptInit(session, m.aesGcm(iv, aad), key);
      return this.p11.C_EncryptAsync(session, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES));
    });
    return {
      iv,
      ciphertext: out.subarray(0, out.length - GCM_TAG_BYTES),
      tag: out.subarray(out.length - GCM_TAG_BYTES),
    };
  }

  private async gcmDecrypt(key: Handle, sealed: AesGcmSealed, aad: Buffer | undefined): Promise<Buffer> {
    if (sealed.iv.length !== GCM_IV_BYTES || sealed.tag.length !== GCM_TAG_BYTES) throw invalidCiphertext();
    return this.run('decrypt', async (session) => {
      this.p11.C_DecryptInit(session, m.aesGcm(sealed.iv, aad), key);
      try {
        const input = Buffer.concat([sealed.ciphertext, sealed.tag]);
        return Buffer.from(await this.p11.C_DecryptAsync(session, input, Buffer.alloc(input.length)));
      } catch (error) {
        const code = pkcs11Code(error);
        if (code !== undefined && DECRYPT_REJECTED.has(code)) throw invalidCiphertext();
        throw error;
      }
    });
  }

  /** Runs an operation on a pooled session, translating vendor errors by code. */
  private async run<T>(operation: string, fn: (session: Handle) => Promise<T> | T): Promise<T> {
    try {
      return await this.pool.use(fn);
    } catch (error) {
      throw translatePkcs11Error(error, operation);
    }
  }

  /** Looks the version key up once per process; a stale handle (destroyed elsewhere) is re-resolved once. */
  private async withVersionKey<T>(versionId: string, fn: (key: Handle) => Promise<T>): Promise<T> {
    const key = await this.findSecretKey(versionId);
    if (key === undefined) throw internalFailure('The key material of this version is missing from the HSM.');
    try {
      return await fn(key);
    } catch (error) {
      if (!(error instanceof KmsError) || error.kind !== 'internal') throw error;
      this.handles.delete(versionId);
      const again = await this.findSecretKey(versionId);
      if (again === undefined || again.equals(key)) throw error;
      return fn(again);
    }
  }

  private findSecretKey(id: string): Promise<Handle | undefined> {
    return this.findCached(id, m.secretKeyById(id));
  }

  private findPrivateKey(wrappingKeyId: string): Promise<Handle | undefined> {
    return this.findCached(wrappingHandleKey(wrappingKeyId), m.privateKeyById(wrappingKeyId));
  }

  /** One token search per object and process; the handle is cached under `cacheKey`. */
  private async findCached(cacheKey: string, template: pkcs11js.Template): Promise<Handle | undefined> {
    const cached = this.handles.get(cacheKey);
    if (cached) return cached;
    const [handle] = await this.run('findKey', (session) => findObjects(this.p11, session, template));
    if (handle) this.handles.set(cacheKey, handle);
    return handle;
  }
}

const wrappingHandleKey = (id: string) => `wrapping:${id}`;

function importedKeyTemplate(request: ImportUnwrapRequest, value?: Buffer): pkcs11js.Template {
  const target = request.target;
  return m.aesKeyTemplate({
    token: target.kind === 'token',
    // CKA_SIGN lets the token compute the CMAC fingerprint of the material.
    sign: true,
    ...(target.kind === 'token' ? { id: target.versionId, label: target.versionId } : {}),
    ...(value ? { value } : {}),
  });
}

/** No oracle: every unwrap failure (padding, length, wrong key, tampering) is one error. */
function uniformUnwrapError(error: unknown): KmsError {
  if (error instanceof KmsError && error.kind === 'unavailable') return error;
  const translated = translatePkcs11Error(error, 'unwrap');
  if (translated.kind === 'unavailable') return translated;
  return invalidKeyMaterial();
}

export { findObjects };

/** Finds or creates the root key (AES-256, seals SOFTWARE-tier material and secrets) and the import-token MAC key. */
function ensureServiceKeys(p11: pkcs11js.PKCS11, session: Handle): { rootKey: Handle; macKey: Handle } {
  let [rootKey] = findObjects(p11, session, m.secretKeyById(ROOT_KEY_ID));
  if (!rootKey) {
    rootKey = p11.C_GenerateKey(
      session,
      m.aesKeyGen,
      m.aesKeyTemplate({ token: true, id: ROOT_KEY_ID, label: ROOT_KEY_ID, valueLength: 32, wrap: true }),
    );
  }
  let [macKey] = findObjects(p11, session, m.secretKeyById(TOKEN_MAC_KEY_ID));
  if (!macKey) {
    macKey = p11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_ID, value: Buffer.from(TOKEN_MAC_KEY_ID) },
      { type: pkcs11js.CKA_LABEL, value: TOKEN_MAC_KEY_ID },
    ]);
  }
  return { rootKey, macKey };
}

function toBase64Url(value: unknown): string {
  if (!Buffer.isBuffer(value)) throw internalFailure('The token returned no RSA public key component.');
  return value.toString('base64url');
}

export type { HsmCapabilities };
