import pkcs11js from 'pkcs11js';
import type { AsymmetricEncryptionAlgorithm, SigningAlgorithm } from '../../domain/asymmetric.js';
import { type MacAlgorithm, macHash } from '../../domain/mac.js';
import { internalFailure, invalidCiphertext, unavailable } from '../../domain/errors.js';
import type {
  AesGcmSealed,
  Hsm,
  HsmCapabilities,
  HsmInfo,
  HsmSessionStats,
  HsmObjectIds,
  ImportUnwrapRequest,
  ImportUnwrapResult,
  VersionKeySpec,
  WrappedMaterial,
  WrappedVersionKey,
  WrappedVersionKeyPair,
  WrappingAlgorithm,
} from '../hsm.js';
import { AuditAnchors } from './audit-anchors.js';
import { AuditDigestKey } from './audit-digest-key.js';
import { ByokUnwrap } from './byok-unwrap.js';
import { probeCapabilities } from './capabilities.js';
import { isGeneralError, mayNeedRecovery, pkcs11Code, translatePkcs11Error } from './errors.js';
import * as m from './mechanisms.js';
import { GCM_IV_BYTES, nextGcmIv } from '../gcm-iv.js';
import {
  TokenNotFound,
  acquireModule,
  findTokenSlot,
  initializeAgain,
  login,
  moduleGeneration,
  msSinceRestart,
  releaseModule,
  restartModule,
  useModule,
} from './module.js';
import { ObjectHandleCache, StaleTokenView } from './object-cache.js';
import { findObjects, listObjectIdsOfClass } from './object-inventory.js';
import { ROOT_KEY_ID, TOKEN_MAC_KEY_ID, ensureServiceKeys } from './service-keys.js';
import { SessionPool } from './session-pool.js';
import { UnwrappedKeyCache } from './unwrapped-key-cache.js';
import { VersionKeys, signDigest } from './version-keys.js';
import { WrappedKeys, wrappedKeyUse } from './wrapped-keys.js';

type Handle = pkcs11js.Handle;

/**
 * At most one module restart per this many ms for an object that stayed invisible while the
 * token answered normally (object-cache.ts `persistent-miss`): an object truly gone (destroyed
 * by a deletion in flight) must not restart the module on every call.
 */
const MISS_RESTART_INTERVAL_MS = 30_000;

/** Pause before a failed C_GetTokenInfo is asked again (`tokenViewIntact`). */
const TOKEN_VIEW_RECHECK_MS = 50;

/** Tries in all of opening the token when it answers CKR_GENERAL_ERROR (`open`). */
const OPEN_ATTEMPTS = 3;
/** Pause before the n-th retry of `open`: n × this. */
const OPEN_RETRY_PAUSE_MS = 100;

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
  /** Unwrapped HsmEncryptedDatabase version keys kept as session objects (KMS_HSM_UNWRAPPED_KEY_CACHE_SIZE). */
  unwrappedKeyCacheSize?: number;
  /** Where the adapter reports what it repaired on its own (a module restart); never given secrets. */
  warn?: (message: string) => void;
  /** MISS_RESTART_INTERVAL_MS unless given (tests). */
  missRestartIntervalMs?: number;
}

/**
 * Default bound of the unwrapped-key LRU. Measured here: a SoftHSM2 session object costs ~7 KiB
 * of process memory (20,000 of them: +145 MiB RSS over 2,000), so 4,096 hot keys (~30 MiB)
 * rather than a size that would hold a 100,000-version instance (never under 300 MiB).
 */
export const DEFAULT_UNWRAPPED_KEY_CACHE_SIZE = 4_096;

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
  private readonly auditDigestKey: AuditDigestKey;
  private readonly auditAnchors: AuditAnchors;
  private readonly unwrapped: UnwrappedKeyCache;
  private readonly wrapped: WrappedKeys;
  private closed = false;
  /** The module generation (module.ts) this adapter's sessions and handles belong to. */
  private generation: number;

  private constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly options: Pkcs11HsmOptions,
    private loginSession: Handle,
    private readonly pool: SessionPool,
    private readonly hsmInfo: HsmInfo,
    private rootKey: Handle,
    private macKey: Handle,
    private slot: Handle,
    /**
     * Logs `session` in again (issue 19: sessions closed under the service, a device error).
     * It holds the user PIN in this process's memory for that purpose; never logged.
     */
    private readonly relogin: (session: Handle) => void,
  ) {
    this.generation = moduleGeneration(options.modulePath);
    const run = this.run.bind(this);
    this.cache = new ObjectHandleCache(
      p11,
      run,
      () => this.tokenViewIntact(),
      () => msSinceRestart(options.modulePath) >= (options.missRestartIntervalMs ?? MISS_RESTART_INTERVAL_MS),
    );
    this.versionKeys = new VersionKeys(p11, run, this.cache, hsmInfo.capabilities, options.importStrict);
    this.unwrapped = new UnwrappedKeyCache(p11, slot, options.unwrappedKeyCacheSize ?? DEFAULT_UNWRAPPED_KEY_CACHE_SIZE);
    this.wrapped = new WrappedKeys(p11, run, hsmInfo.capabilities, this.unwrapped);
    this.byok = new ByokUnwrap(p11, run, this.cache, hsmInfo.capabilities, () => this.rootKey, options.importStrict, this.wrapped);
    this.auditDigestKey = new AuditDigestKey(p11, run);
    this.auditAnchors = new AuditAnchors(p11, run);
  }

  /**
   * Opens the token: login, the service keys, the capability probe, the master key. Tried again
   * (OPEN_ATTEMPTS in all, a short pause between) when the token answers CKR_GENERAL_ERROR or
   * seems not to be there: SoftHSM2 2.6.1 does both while another process rewrites the token's
   * token.object, which every login does (found by fresh-clone runs: a `kms access-key create`
   * during a burst of CreateKeys; a `kms serve` starting beside a busy test server). Such a
   * read sticks for the life of the library's initialization, so before the next try the
   * module is read afresh: finalized by the failed try's release when nothing else of this
   * process holds it, else restarted for every adapter (restartModule).
   * @throws ServiceUnavailableTemporary / InternalFailure naming the CKR (errors.ts)
   */
  static async open(options: Pkcs11HsmOptions): Promise<Pkcs11Hsm> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await Pkcs11Hsm.openOnce(options);
      } catch (error) {
        const tornRead = isGeneralError(error) || error instanceof TokenNotFound;
        if (!tornRead || attempt >= OPEN_ATTEMPTS) throw translatePkcs11Error(error, 'open');
        await new Promise((resolve) => setTimeout(resolve, OPEN_RETRY_PAUSE_MS * attempt));
        await restartModule(options.modulePath);
      }
    }
  }

  /** One try of `open`; on failure what it opened is closed and the raw error thrown. */
  private static async openOnce(options: Pkcs11HsmOptions): Promise<Pkcs11Hsm> {
    const p11 = acquireModule(options.modulePath);
    let loginSession: Handle | undefined;
    let pool: SessionPool | undefined;
    try {
      const slot = findTokenSlot(p11, options.tokenLabel);
      // Login is per application: one session logged in makes every session of ours a user session.
      loginSession = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      login(p11, loginSession, options.pin);
      const sessions = new SessionPool(p11, slot, options.sessions);
      pool = sessions;
      const { rootKey, macKey } = await sessions.use((session) => ensureServiceKeys(p11, session));
      const capabilities = await sessions.use((session) => probeCapabilities(p11, session));
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
      const pin = options.pin;
      const hsm = new Pkcs11Hsm(p11, options, loginSession, sessions, info, rootKey, macKey, slot, (session) => login(p11, session, pin));
      // Absent is fine (HsmEncryptedDatabase is then refused with a clear 503); a master with
      // the wrong protection is never used.
      await hsm.wrapped.refreshMaster();
      return hsm;
    } catch (error) {
      pool?.close();
      if (loginSession !== undefined) {
        try {
          p11.C_CloseSession(loginSession);
        } catch {
          // Gone with the failure.
        }
      }
      releaseModule(options.modulePath);
      throw error;
    }
  }

  sessionStats(): HsmSessionStats {
    return this.pool.stats();
  }

  info(): HsmInfo {
    return this.hsmInfo;
  }

  // ---- version keys, by spec --------------------------------------------------------------

  generateVersionKey(versionId: string, spec: VersionKeySpec): Promise<void> {
    return this.op(() => this.versionKeys.generate(versionId, spec));
  }

  supportsVersionKey(spec: VersionKeySpec): boolean {
    return this.versionKeys.supports(spec);
  }

  hasVersionKey(versionId: string): Promise<boolean> {
    return this.op(() => this.versionKeys.has(versionId));
  }

  destroyVersionKey(versionId: string): Promise<boolean> {
    return this.op(() => this.versionKeys.destroy(versionId));
  }

  versionPublicKey(versionId: string): Promise<Buffer> {
    return this.op(() => this.versionKeys.publicKey(versionId));
  }

  signWithVersionKey(versionId: string, algorithm: SigningAlgorithm, digest: Buffer): Promise<Buffer> {
    return this.op(() => this.versionKeys.sign(versionId, algorithm, digest));
  }

  signWithKeyMaterial(privateKeyPkcs8: Buffer, algorithm: SigningAlgorithm, digest: Buffer): Promise<Buffer> {
    return this.op(() => this.versionKeys.signWithKeyMaterial(privateKeyPkcs8, algorithm, digest));
  }

  verifyWithPublicKey(publicKeyDer: Buffer, algorithm: SigningAlgorithm, digest: Buffer, signature: Buffer): Promise<boolean> {
    return this.op(() => this.versionKeys.verifyWithPublicKey(publicKeyDer, algorithm, digest, signature));
  }

  supportsAsymmetricDecryption(algorithm: AsymmetricEncryptionAlgorithm): boolean {
    return this.versionKeys.decryptionPath(algorithm) !== undefined;
  }

  decryptWithVersionKeyPair(versionId: string, algorithm: AsymmetricEncryptionAlgorithm, ciphertext: Buffer): Promise<Buffer> {
    return this.op(() => this.versionKeys.decrypt(versionId, algorithm, ciphertext));
  }

  async encryptWithVersionKey(versionId: string, plaintext: Buffer, aad: Buffer | undefined): Promise<AesGcmSealed> {
    return this.op(() => this.withSecretKey(versionId, (key) => this.gcmEncrypt(key, plaintext, aad)));
  }

  async decryptWithVersionKey(versionId: string, sealed: AesGcmSealed, aad: Buffer | undefined): Promise<Buffer> {
    return this.op(() => this.withSecretKey(versionId, (key) => this.gcmDecrypt(key, sealed, aad)));
  }

  macWithVersionKey(versionId: string, algorithm: MacAlgorithm, message: Buffer): Promise<Buffer> {
    return this.op(() => this.versionKeys.mac(versionId, macHash(algorithm), message));
  }

  async fingerprintVersionKey(versionId: string): Promise<Buffer> {
    return this.op(() => this.withSecretKey(versionId, (key) => this.run('fingerprint', (session) => this.byok.fingerprint(session, key))));
  }

  // ---- HsmEncryptedDatabase ---------------------------------------------------------------

  hasMasterWrappingKey(): Promise<boolean> {
    return this.op(() => this.wrapped.hasMaster());
  }

  supportsWrappedVersionKey(spec: VersionKeySpec): boolean {
    return this.wrapped.supports(spec, this.versionKeys.supports(spec));
  }

  generateWrappedVersionKey(versionId: string, spec: VersionKeySpec): Promise<WrappedMaterial> {
    if (!this.supportsWrappedVersionKey(spec)) return Promise.reject(internalFailure(`HsmEncryptedDatabase storage cannot hold ${spec.kind} keys on this HSM.`));
    return this.op(() => this.wrapped.generate(versionId, spec));
  }

  signWithWrappedKeyPair(key: WrappedVersionKeyPair, algorithm: SigningAlgorithm, digest: Buffer): Promise<Buffer> {
    return this.op(() => this.wrapped.withKey(key, wrappedKeyUse(key.spec), (handle) => this.run('sign', (session) => signDigest(this.p11, session, handle, algorithm, digest))));
  }

  decryptWithWrappedKeyPair(key: WrappedVersionKeyPair, algorithm: AsymmetricEncryptionAlgorithm, ciphertext: Buffer): Promise<Buffer> {
    return this.op(() => this.versionKeys.decryptWith(key.publicKeyDer, algorithm, ciphertext, (fn) => this.wrapped.withKey(key, wrappedKeyUse(key.spec), fn)));
  }

  encryptWithWrappedKey(key: WrappedVersionKey, plaintext: Buffer, aad: Buffer | undefined): Promise<AesGcmSealed> {
    return this.op(() => this.wrapped.withKey(key, 'aes', (handle) => this.gcmEncrypt(handle, plaintext, aad)));
  }

  decryptWithWrappedKey(key: WrappedVersionKey, sealed: AesGcmSealed, aad: Buffer | undefined): Promise<Buffer> {
    return this.op(() => this.wrapped.withKey(key, 'aes', (handle) => this.gcmDecrypt(handle, sealed, aad)));
  }

  macWithWrappedKey(key: WrappedVersionKey, algorithm: MacAlgorithm, message: Buffer): Promise<Buffer> {
    const hash = macHash(algorithm);
    return this.op(() => this.wrapped.withKey(key, 'hmac', (handle) => this.versionKeys.macWithHandle(handle, hash, message)));
  }

  fingerprintWrappedKey(key: WrappedVersionKey): Promise<Buffer> {
    return this.op(() => this.wrapped.withKey(key, 'aes', (handle) => this.run('fingerprint', (session) => this.byok.fingerprint(session, handle))));
  }

  forgetWrappedKey(versionId: string): void {
    // After a module restart the cached objects are gone, and their handle numbers may name others.
    if (this.generation !== moduleGeneration(this.options.modulePath)) return;
    this.wrapped.forget(versionId);
  }

  // ---- reconciliation -----------------------------------------------------------------------

  async listObjectIds(): Promise<HsmObjectIds> {
    // A stale token view lists what this process saw last: the reconciler would flag other
    // processes' new objects as missing. Restart (op) and list again rather than answer from it.
    // Asked after the listing: the search itself is what re-reads the token and can find it torn.
    return this.op(async () => {
      const listed = await this.listTokenObjectIds();
      await this.cache.assertTokenView();
      return listed;
    });
  }

  private listTokenObjectIds(): Promise<HsmObjectIds> {
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
    const sealed = await this.op(() => this.gcmEncrypt(this.rootKey, plaintext, aad));
    return Buffer.concat([sealed.iv, sealed.ciphertext, sealed.tag]);
  }

  async unsealWithRootKey(blob: Buffer, aad?: Buffer): Promise<Buffer> {
    if (blob.length < GCM_IV_BYTES + GCM_TAG_BYTES) throw invalidCiphertext();
    const sealed = {
      iv: blob.subarray(0, GCM_IV_BYTES),
      ciphertext: blob.subarray(GCM_IV_BYTES, blob.length - GCM_TAG_BYTES),
      tag: blob.subarray(blob.length - GCM_TAG_BYTES),
    };
    return this.op(() => this.gcmDecrypt(this.rootKey, sealed, aad));
  }

  async macWithTokenKey(data: Buffer): Promise<Buffer> {
    return this.op(() => this.run('mac', (session) => {
      this.p11.C_SignInit(session, m.sha256Hmac, this.macKey);
      return this.p11.C_Sign(session, data, Buffer.alloc(32));
    }));
  }

  async randomBytes(length: number): Promise<Buffer> {
    return this.op(() => this.run('random', (session) => this.p11.C_GenerateRandom(session, Buffer.alloc(length))));
  }

  // ---- BYOK --------------------------------------------------------------------------------

  generateWrappingKeyPair(wrappingKeyId: string): Promise<{ publicKeyDer: Buffer }> {
    return this.op(() => this.byok.generateWrappingKeyPair(wrappingKeyId));
  }

  destroyWrappingKeyPair(wrappingKeyId: string): Promise<void> {
    return this.op(() => this.byok.destroyWrappingKeyPair(wrappingKeyId));
  }

  supportsWrappingAlgorithm(algorithm: WrappingAlgorithm): boolean {
    return this.byok.unwrapPathFor(algorithm) !== undefined;
  }

  unwrapImportedMaterial(request: ImportUnwrapRequest): Promise<ImportUnwrapResult> {
    return this.op(() => this.byok.unwrapImportedMaterial(request));
  }

  // ---- audit digests (audit-digest-key.ts) ---------------------------------------------------

  signAuditDigest(message: Buffer): Promise<{ signature: Buffer; publicKeyDer: Buffer }> {
    return this.op(() => this.auditDigestKey.sign(message));
  }

  auditDigestPublicKeys(): Promise<Buffer[]> {
    return this.op(() => this.auditDigestKey.publicKeys());
  }

  readAuditAnchor(chainId: number): Promise<Buffer[]> {
    return this.op(() => this.auditAnchors.read(chainId));
  }

  writeAuditAnchor(chainId: number, value: Buffer): Promise<void> {
    return this.op(() => this.auditAnchors.write(chainId, value));
  }

  clearAuditAnchors(): Promise<number> {
    return this.op(() => this.auditAnchors.clear());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // After a module restart our handles are gone, and their numbers may be another adapter's now.
    if (this.generation === moduleGeneration(this.options.modulePath)) {
      this.unwrapped.close();
      this.pool.close();
      try {
        this.p11.C_CloseSession(this.loginSession);
      } catch {
        // Best effort at shutdown.
      }
    }
    releaseModule(this.options.modulePath);
  }

  // ---- internals ---------------------------------------------------------------------------

  /**
   * Runs one public operation under the module's lease (module.ts `useModule`), so that no
   * restart falls inside it, with this adapter's handles of the module's current generation: the
   * first operation after a restart reopens the adapter (`reopen`). An operation that met a
   * stale token view (`tokenViewIntact`) restarts the module, once, and runs again.
   */
  private async op<T>(operation: () => Promise<T>): Promise<T> {
    const modulePath = this.options.modulePath;
    for (let attempt = 1; ; attempt++) {
      try {
        return await useModule(modulePath, () => {
          if (this.generation !== moduleGeneration(modulePath)) this.reopen();
          return operation();
        });
      } catch (error) {
        if (!(error instanceof StaleTokenView)) throw error;
        if (attempt > 1 || this.closed) throw unavailable('The HSM token could not be read afresh (its view in this process is stale); retry.');
        this.options.warn?.(
          error.evidence === 'broken'
            ? 'hsm: this process no longer sees the token directory change (SoftHSM2 stale token view); restarting the PKCS#11 module'
            : 'hsm: an object the database names stayed invisible to this process (SoftHSM2 missed another process\'s write); restarting the PKCS#11 module',
        );
        const restarted = await restartModule(modulePath).catch(() => false);
        if (!restarted) throw unavailable('The HSM token view of this process is stale and the module could not be restarted now; retry.');
      }
    }
  }

  /**
   * After a module restart: every session, login and handle of the old generation is gone, and
   * the same numbers may now name other objects, so all are forgotten (none closed), and the
   * slot, a login session, the service keys and the master key are found again. Synchronous,
   * so no other operation of this adapter interleaves.
   */
  private reopen(): void {
    const p11 = this.p11;
    const generation = moduleGeneration(this.options.modulePath);
    // Forgotten first, whatever follows: nothing of the old generation may be used again.
    this.cache.clear();
    this.unwrapped.abandon();
    this.wrapped.forgetMaster();
    this.pool.abandon(this.slot);
    try {
      // A restart whose C_Initialize failed left the library finalized: try once more here.
      initializeAgain(p11);
      this.slot = findTokenSlot(p11, this.options.tokenLabel);
      this.pool.abandon(this.slot);
      this.unwrapped.moveTo(this.slot);
      this.loginSession = p11.C_OpenSession(this.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      this.relogin(this.loginSession);
      const { rootKey, macKey } = ensureServiceKeys(p11, this.loginSession);
      this.rootKey = rootKey;
      this.macKey = macKey;
    } catch (error) {
      // Not reopened: the generation stays behind, so the next operation tries again (found by
      // the multi-node probe: a reopen that failed once left a node answering 500 for good). A
      // library that read the token torn at its C_Initialize (another process logging in) needs
      // reading afresh once more: the operation restarts the module (op).
      if (isGeneralError(error) || error instanceof TokenNotFound) throw new StaleTokenView('broken');
      throw translatePkcs11Error(error, 'reopen');
    }
    this.generation = generation;
  }

  /**
   * Whether this process still sees the token change. SoftHSM2 2.6.1 stops re-reading a token
   * directory for good once it met the token's token.object empty or half-written — which it
   * is for a moment whenever another process logs in (ObjectFile::store unlocks before
   * fclose flushes) — and from then on shows none of the other processes' new objects (issue
   * 19: an HsmInternal key made on one node answered 503 on another for minutes). Its
   * C_GetTokenInfo then fails with CKR_GENERAL_ERROR for good; a moment's torn read fails once,
   * so a failure counts only if it repeats after a short pause.
   */
  private async tokenViewIntact(): Promise<boolean> {
    if (this.tokenInfoReadable()) return true;
    await new Promise((resolve) => setTimeout(resolve, TOKEN_VIEW_RECHECK_MS));
    return this.tokenInfoReadable();
  }

  private tokenInfoReadable(): boolean {
    try {
      this.p11.C_GetTokenInfo(this.slot);
      return true;
    } catch (error) {
      return !isGeneralError(error);
    }
  }

  // AES-GCM and HMAC run synchronously on the calling thread: with inputs of at most a few KiB
  // the token's work (15–30 µs of CPU on SoftHSM2) costs less than the thread-pool round trip
  // of pkcs11js's *Async calls (40–70 µs of CPU more per call, measured). Slow operations (key
  // generation, RSA, unwrap) stay asynchronous.
  private async gcmEncrypt(key: Handle, plaintext: Buffer, aad: Buffer | undefined): Promise<AesGcmSealed> {
    const iv = nextGcmIv();
    const out = await this.run('encrypt', (session) => {
      this.p11.C_EncryptInit(session, m.aesGcm(iv, aad), key);
      return this.p11.C_Encrypt(session, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES));
    });
    return {
      iv,
      ciphertext: out.subarray(0, out.length - GCM_TAG_BYTES),
      tag: out.subarray(out.length - GCM_TAG_BYTES),
    };
  }

  private async gcmDecrypt(key: Handle, sealed: AesGcmSealed, aad: Buffer | undefined): Promise<Buffer> {
    if (sealed.iv.length !== GCM_IV_BYTES || sealed.tag.length !== GCM_TAG_BYTES) throw invalidCiphertext();
    return this.run('decrypt', (session) => {
      this.p11.C_DecryptInit(session, m.aesGcm(sealed.iv, aad), key);
      try {
        const input = Buffer.concat([sealed.ciphertext, sealed.tag]);
        return this.p11.C_Decrypt(session, input, Buffer.alloc(input.length));
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
      // The call that met the fault answers 503; the adapter is whole again for the next one.
      if (mayNeedRecovery(error) && (this.inRecovery || (await this.recoverOnce()))) throw unavailable(`The HSM session was lost (${operation}); sessions were re-opened, retry.`);
      throw translatePkcs11Error(error, operation);
    }
  }

  private recovering: Promise<boolean> | undefined;
  /** Set while recover() runs: its own HSM calls (and others meanwhile) do not start another. */
  private inRecovery = false;

  /** One recovery at a time: the calls that fail together wait for the same one. */
  private recoverOnce(): Promise<boolean> {
    this.recovering ??= this.recover().finally(() => (this.recovering = undefined));
    return this.recovering;
  }

  /**
   * Issue 19, HSM faults: if the login session or the service keys' handles are gone (the
   * sessions were closed under the service, the token logged out or reset), drop the idle
   * sessions, open a new login session, log in again and find the service keys and the
   * master wrapping key again. Version-key handles re-resolve themselves (object-cache.ts).
   * Returns whether anything had to be redone; false also when the token is still away
   * (the next faulty call tries again).
   */
  private async recover(): Promise<boolean> {
    if (this.closed || this.adapterIntact()) return false;
    this.inRecovery = true;
    try {
      this.pool.discardIdle();
      try {
        this.p11.C_CloseSession(this.loginSession);
      } catch {
        // Already gone.
      }
      this.loginSession = this.p11.C_OpenSession(this.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      this.relogin(this.loginSession);
      const { rootKey, macKey } = await this.pool.use((session) => ensureServiceKeys(this.p11, session));
      this.rootKey = rootKey;
      this.macKey = macKey;
      await this.wrapped.refreshMaster();
      return true;
    } catch {
      return true;
    } finally {
      this.inRecovery = false;
    }
  }

  /** Whether the login session is still logged in and the service keys' handles still valid. */
  private adapterIntact(): boolean {
    try {
      const state = this.p11.C_GetSessionInfo(this.loginSession).state;
      if (state !== CKS_RO_USER_FUNCTIONS && state !== CKS_RW_USER_FUNCTIONS) return false;
      this.p11.C_GetAttributeValue(this.loginSession, this.rootKey, [{ type: pkcs11js.CKA_CLASS }]);
      this.p11.C_GetAttributeValue(this.loginSession, this.macKey, [{ type: pkcs11js.CKA_CLASS }]);
      return true;
    } catch {
      return false;
    }
  }

  /** A version's AES key (cached under its version id); a stale handle is re-resolved once. */
  private withSecretKey<T>(versionId: string, fn: (key: Handle) => Promise<T>): Promise<T> {
    return this.cache.withObject(versionId, m.secretKeyById(versionId), missingFromToken, fn);
  }
}

/**
 * Issue 19: a version the database says exists but the token does not show after the bounded
 * re-search (SoftHSM2 shows another process's new objects only after its own refresh) is a
 * retryable 503, never a 500.
 */
/** PKCS#11 session states of a logged-in user (pkcs11js has no constants for them). */
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

export const missingFromToken = () =>
  unavailable('The key material of this version was not found in the HSM yet (another node may have just created it); retry.');

// Tests and tools import these from here.
export { ROOT_KEY_ID, TOKEN_MAC_KEY_ID, findObjects };
export type { HsmCapabilities };
