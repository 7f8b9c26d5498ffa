import { randomBytes as nodeRandomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { AsymmetricEncryptionAlgorithm, SigningAlgorithm } from '../../domain/asymmetric.js';
import { type MacAlgorithm, macHash } from '../../domain/mac.js';
import { invalidCiphertext, internalFailure } from '../../domain/errors.js';
import type {
  AesGcmSealed,
  Hsm,
  HsmCapabilities,
  HsmInfo,
  HsmObjectIds,
  ImportUnwrapRequest,
  ImportUnwrapResult,
  VersionKeySpec,
  WrappingAlgorithm,
} from '../hsm.js';
import { ByokUnwrap } from './byok-unwrap.js';
import { probeCapabilities } from './capabilities.js';
import { pkcs11Code, translatePkcs11Error } from './errors.js';
import * as m from './mechanisms.js';
import { acquireModule, findTokenSlot, login, releaseModule } from './module.js';
import { ObjectHandleCache } from './object-cache.js';
import { findObjects, listObjectIdsOfClass } from './object-inventory.js';
import { ROOT_KEY_ID, TOKEN_MAC_KEY_ID, ensureServiceKeys } from './service-keys.js';
import { SessionPool } from './session-pool.js';
import { VersionKeys } from './version-keys.js';

type Handle = pkcs11js.Handle;

export interface Pkcs11HsmOptions {
  modulePath: string;
  tokenLabel: string;
  /** The user PIN; used once to log in and not kept. */
  pin: string;
  sessions: number;
  /**
   * Refuse host-side OAEP decoding when the token lacks the mechanism (KMS_IMPORT_STRICT):
   * for BYOK import and for AsymmetricDecrypt alike.
   */
  importStrict: boolean;
}

const GCM_IV_BYTES = 12;
const GCM_TAG_BYTES = 16;

/** Result codes that mean "the tag or data did not verify", as opposed to a broken token. */
const DECRYPT_REJECTED = new Set<number>([
  pkcs11js.CKR_ENCRYPTED_DATA_INVALID,
  pkcs11js.CKR_ENCRYPTED_DATA_LEN_RANGE,
  pkcs11js.CKR_GENERAL_ERROR,
  pkcs11js.CKR_FUNCTION_FAILED,
]);

/**
 * The PKCS#11 adapter: a session pool over one logged-in token and a capability probe run at
 * start. The work is split by concern: version keys by spec (version-keys.ts), BYOK unwrap
 * (byok-unwrap.ts), the service's own keys (service-keys.ts) and the handle cache
 * (object-cache.ts); AES-GCM under a version key or the root key stays here.
 */
export class Pkcs11Hsm implements Hsm {
  private readonly cache: ObjectHandleCache;
  private readonly versionKeys: VersionKeys;
  private readonly byok: ByokUnwrap;
  private closed = false;

  private constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly options: Pkcs11HsmOptions,
    private readonly loginSession: Handle,
    private readonly pool: SessionPool,
    private readonly hsmInfo: HsmInfo,
    private readonly rootKey: Handle,
    private readonly macKey: Handle,
  ) {
    const run = this.run.bind(this);
    this.cache = new ObjectHandleCache(p11, run);
    this.versionKeys = new VersionKeys(p11, run, this.cache, hsmInfo.capabilities, options.importStrict);
    this.byok = new ByokUnwrap(p11, run, this.cache, hsmInfo.capabilities, rootKey, options.importStrict);
  }

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

  // ---- version keys, by spec --------------------------------------------------------------

  generateVersionKey(versionId: string, spec: VersionKeySpec): Promise<void> {
    return this.versionKeys.generate(versionId, spec);
  }

  supportsVersionKey(spec: VersionKeySpec): boolean {
    return this.versionKeys.supports(spec);
  }

  hasVersionKey(versionId: string): Promise<boolean> {
    return this.versionKeys.has(versionId);
  }

  destroyVersionKey(versionId: string): Promise<boolean> {
    return this.versionKeys.destroy(versionId);
  }

  versionPublicKey(versionId: string): Promise<Buffer> {
    return this.versionKeys.publicKey(versionId);
  }

  signWithVersionKey(versionId: string, algorithm: SigningAlgorithm, digest: Buffer): Promise<Buffer> {
    return this.versionKeys.sign(versionId, algorithm, digest);
  }

  signWithKeyMaterial(privateKeyPkcs8: Buffer, algorithm: SigningAlgorithm, digest: Buffer): Promise<Buffer> {
    return this.versionKeys.signWithKeyMaterial(privateKeyPkcs8, algorithm, digest);
  }

  verifyWithPublicKey(publicKeyDer: Buffer, algorithm: SigningAlgorithm, digest: Buffer, signature: Buffer): Promise<boolean> {
    return this.versionKeys.verifyWithPublicKey(publicKeyDer, algorithm, digest, signature);
  }

  supportsAsymmetricDecryption(algorithm: AsymmetricEncryptionAlgorithm): boolean {
    return this.versionKeys.decryptionPath(algorithm) !== undefined;
  }

  decryptWithVersionKeyPair(versionId: string, algorithm: AsymmetricEncryptionAlgorithm, ciphertext: Buffer): Promise<Buffer> {
    return this.versionKeys.decrypt(versionId, algorithm, ciphertext);
  }

  async encryptWithVersionKey(versionId: string, plaintext: Buffer, aad: Buffer | undefined): Promise<AesGcmSealed> {
    return this.withSecretKey(versionId, (key) => this.gcmEncrypt(key, plaintext, aad));
  }

  async decryptWithVersionKey(versionId: string, sealed: AesGcmSealed, aad: Buffer | undefined): Promise<Buffer> {
    return this.withSecretKey(versionId, (key) => this.gcmDecrypt(key, sealed, aad));
  }

  macWithVersionKey(versionId: string, algorithm: MacAlgorithm, message: Buffer): Promise<Buffer> {
    return this.versionKeys.mac(versionId, macHash(algorithm), message);
  }

  async fingerprintVersionKey(versionId: string): Promise<Buffer> {
    return this.withSecretKey(versionId, (key) => this.run('fingerprint', (session) => this.byok.fingerprint(session, key)));
  }

  // ---- reconciliation -----------------------------------------------------------------------

  async listObjectIds(): Promise<HsmObjectIds> {
    return this.run('listObjectIds', (session) => ({
      versionKeys: [
        ...listObjectIdsOfClass(this.p11, session, pkcs11js.CKO_SECRET_KEY),
        // Version pairs never unwrap; wrapping pairs always do (mechanisms.ts templates).
        ...listObjectIdsOfClass(this.p11, session, pkcs11js.CKO_PRIVATE_KEY, [{ type: pkcs11js.CKA_UNWRAP, value: false }]),
      ],
      wrappingPairs: listObjectIdsOfClass(this.p11, session, pkcs11js.CKO_PRIVATE_KEY, [{ type: pkcs11js.CKA_UNWRAP, value: true }]),
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

  generateWrappingKeyPair(wrappingKeyId: string): Promise<{ publicKeyDer: Buffer }> {
    return this.byok.generateWrappingKeyPair(wrappingKeyId);
  }

  destroyWrappingKeyPair(wrappingKeyId: string): Promise<void> {
    return this.byok.destroyWrappingKeyPair(wrappingKeyId);
  }

  supportsWrappingAlgorithm(algorithm: WrappingAlgorithm): boolean {
    return this.byok.unwrapPathFor(algorithm) !== undefined;
  }

  unwrapImportedMaterial(request: ImportUnwrapRequest): Promise<ImportUnwrapResult> {
    return this.byok.unwrapImportedMaterial(request);
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

  /** A version's AES key (cached under its version id); a stale handle is re-resolved once. */
  private withSecretKey<T>(versionId: string, fn: (key: Handle) => Promise<T>): Promise<T> {
    return this.cache.withObject(versionId, m.secretKeyById(versionId), () => internalFailure('The key material of this version is missing from the HSM.'), fn);
  }
}

// Tests and tools import these from here.
export { ROOT_KEY_ID, TOKEN_MAC_KEY_ID, findObjects };
export type { HsmCapabilities };
