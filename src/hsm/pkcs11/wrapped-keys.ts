/**
 * HsmEncryptedDatabase version keys (hsm.ts `WrappedVersionKey`): generated in the token as
 * a transient session object that only the trusted master key may wrap out
 * (`CKA_WRAP_WITH_TRUSTED`), wrapped with AES-KWP under the master, and destroyed — the blob
 * goes to Postgres with the version row, so the token holds nothing per version. On use the
 * blob is unwrapped into a sensitive, non-extractable session object, its protection read
 * back, and its handle kept in the bounded LRU of unwrapped-key-cache.ts.
 *
 * Every spec the token makes: AES, HMAC (CKK_GENERIC_SECRET), and RSA/EC pairs — SoftHSM2's
 * CKM_AES_KEY_WRAP_PAD wraps a private key as PKCS#8 (measured: 1,232 bytes for RSA-2048, 80
 * for P-256) and unwraps it into a private-key object; the public half is returned as DER SPKI
 * to be kept beside the blob, since no token object holds it.
 */
import pkcs11js from 'pkcs11js';
import { internalFailure, unavailable } from '../../domain/errors.js';
import { CURVE_OID_DER, MAC_HASH_BYTES } from '../../domain/key-spec.js';
import type { HsmCapabilities, VersionKeySpec, WrappedMaterial, WrappedVersionKey } from '../hsm.js';
import { pkcs11Code, translatePkcs11Error } from './errors.js';
import { type MasterKeyLookup, findMasterWrappingKey } from './master-key.js';
import * as m from './mechanisms.js';
import type { SessionRunner } from './object-cache.js';
import { isUnreadable } from './protection.js';
import { ecPublicKeyDer, rsaPublicKeyDer } from './public-keys.js';
import { UnwrappedKeyCache } from './unwrapped-key-cache.js';

type Handle = pkcs11js.Handle;

/** What an unwrapped key is for: the unwrap template's key type and usage follow from it. */
export type WrappedKeyUse = 'aes' | 'hmac' | 'rsa-sign' | 'rsa-decrypt' | 'ec-sign';

/** What a version key of `spec` is unwrapped as. */
export function wrappedKeyUse(spec: VersionKeySpec): WrappedKeyUse {
  if (spec.kind === 'rsa') return spec.use === 'sign' ? 'rsa-sign' : 'rsa-decrypt';
  if (spec.kind === 'ec') return 'ec-sign';
  return spec.kind;
}

/** Largest blob: AES-KWP of an RSA-3072 private key's PKCS#8 is under 2 KiB. */
const WRAP_BUFFER_BYTES = 4_096;
/** A token without the master is asked again at most this often (`kms hsm init` may add it). */
const MASTER_RECHECK_MS = 1_000;

const MISSING_MASTER =
  'The HSM has no master wrapping key, which HsmEncryptedDatabase storage needs: run `kms hsm init` (it needs the SO PIN) and retry.';

export class WrappedKeys {
  private master: Handle | undefined;
  private masterRefusal: string | undefined;
  private masterCheckedAt = 0;

  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly run: SessionRunner,
    private readonly capabilities: HsmCapabilities,
    private readonly unwrapped: UnwrappedKeyCache,
  ) {}

  /** Looks the master up now (at open, and for `hasMaster`). */
  async refreshMaster(): Promise<MasterKeyLookup> {
    const lookup = await this.run('findMasterWrappingKey', (session) => findMasterWrappingKey(this.p11, session));
    this.masterCheckedAt = Date.now();
    this.master = lookup.status === 'found' ? lookup.handle : undefined;
    this.masterRefusal = lookup.status === 'refused' ? lookup.why : undefined;
    return lookup;
  }

  /** Forgets the master key's handle (a module restart); the next use looks it up again. */
  forgetMaster(): void {
    this.master = undefined;
    this.masterCheckedAt = 0;
  }

  async hasMaster(): Promise<boolean> {
    if (this.master !== undefined) return true;
    return (await this.refreshMaster()).status === 'found';
  }

  /** `tokenSupports`: whether the token makes and uses keys of the spec at all (VersionKeys.supports). */
  supports(spec: VersionKeySpec, tokenSupports: boolean): boolean {
    return this.capabilities.aesKeyWrapPad && tokenSupports;
  }

  /** A new version key (or pair), returned wrapped; nothing of it stays in the token. */
  async generate(versionId: string, spec: VersionKeySpec): Promise<WrappedMaterial> {
    const master = await this.masterKey();
    if (spec.kind === 'rsa' || spec.kind === 'ec') return this.generatePair(versionId, spec, master);
    const wrapped = await this.run('generateWrappedVersionKey', async (session) => {
      const [mechanism, template] =
        spec.kind === 'hmac'
          ? [m.genericSecretKeyGen, wrappableTemplate('hmac', versionId, MAC_HASH_BYTES[spec.hash])]
          : [m.aesKeyGen, wrappableTemplate('aes', versionId, spec.kind === 'aes' ? spec.bits / 8 : 32)];
      const key = await this.p11.C_GenerateKeyAsync(session, mechanism, template);
      try {
        return this.wrapUnderMaster(session, master, key);
      } finally {
        this.p11.C_DestroyObject(session, key);
      }
    });
    return { wrapped };
  }

  /** A pair as session objects: the private half wrapped under the master, the public half read as DER; both destroyed. */
  private generatePair(versionId: string, spec: Extract<VersionKeySpec, { kind: 'rsa' | 'ec' }>, master: Handle): Promise<WrappedMaterial> {
    const shape: m.KeyPairShape = spec.kind === 'rsa' ? { kind: 'rsa', bits: spec.bits, use: spec.use } : { kind: 'ec', params: CURVE_OID_DER[spec.curve] };
    const { publicTemplate, privateTemplate } = m.versionKeyPairTemplates(versionId, shape, false);
    const wrappable = privateTemplate
      .filter((a) => a.type !== pkcs11js.CKA_EXTRACTABLE)
      .concat([
        { type: pkcs11js.CKA_EXTRACTABLE, value: true },
        { type: pkcs11js.CKA_WRAP_WITH_TRUSTED, value: true },
      ]);
    return this.run('generateWrappedVersionKeyPair', async (session) => {
      const pair = await this.p11.C_GenerateKeyPairAsync(session, spec.kind === 'rsa' ? m.rsaKeyPairGen : m.ecKeyPairGen, publicTemplate, wrappable);
      try {
        const publicKeyDer = spec.kind === 'rsa' ? rsaPublicKeyDer(this.p11, session, pair.publicKey) : ecPublicKeyDer(this.p11, session, pair.publicKey, spec.curve);
        return { wrapped: await this.wrapUnderMaster(session, master, pair.privateKey), publicKeyDer };
      } finally {
        this.p11.C_DestroyObject(session, pair.privateKey);
        this.p11.C_DestroyObject(session, pair.publicKey);
      }
    });
  }

  /**
   * Wraps a transient, wrap-with-trusted key under the master (BYOK import into a wrapped
   * version). Refuses a key the token would let anything else read.
   */
  async wrapUnderMaster(session: Handle, master: Handle, key: Handle): Promise<Buffer> {
    const [sensitive, wrapWithTrusted] = this.p11.C_GetAttributeValue(session, key, [
      { type: pkcs11js.CKA_SENSITIVE },
      { type: pkcs11js.CKA_WRAP_WITH_TRUSTED },
    ]);
    if (!isTrue(sensitive?.value) || !isTrue(wrapWithTrusted?.value)) {
      throw internalFailure('The HSM made a version key that is not sensitive or not wrap-with-trusted; refused.');
    }
    return Buffer.from(this.p11.C_WrapKey(session, m.aesKeyWrapPad, master, key, Buffer.alloc(WRAP_BUFFER_BYTES)));
  }

  /** The master's handle, or a clear refusal (503) when the token has none. */
  async masterKey(): Promise<Handle> {
    if (this.master !== undefined) return this.master;
    if (Date.now() - this.masterCheckedAt >= MASTER_RECHECK_MS) await this.refreshMaster();
    if (this.master !== undefined) return this.master;
    throw unavailable(this.masterRefusal ? `HsmEncryptedDatabase storage is refused: ${this.masterRefusal}.` : MISSING_MASTER);
  }

  /**
   * Runs `fn` with the version's key unwrapped into a session object (cached per process). A
   * blob that does not unwrap under the master (tampered, or from another token) is a clear
   * InternalFailure, never a crash.
   */
  async withKey<T>(key: WrappedVersionKey, use: WrappedKeyUse, fn: (handle: Handle) => Promise<T>): Promise<T> {
    const master = await this.masterKey();
    try {
      return await this.unwrapped.use(cacheKey(use, key.versionId), (owner) => this.unwrap(owner, master, key, use), fn);
    } catch (error) {
      throw translatePkcs11Error(error, 'useWrappedVersionKey');
    }
  }

  /** Drops this process's unwrapped copies of the version's key (material deleted or expired). */
  forget(versionId: string): void {
    for (const use of WRAPPED_KEY_USES) this.unwrapped.forget(cacheKey(use, versionId));
  }

  private unwrap(owner: Handle, master: Handle, key: WrappedVersionKey, use: WrappedKeyUse): Handle {
    let handle: Handle;
    try {
      handle = this.p11.C_UnwrapKey(owner, m.aesKeyWrapPad, master, key.wrapped, unwrappedTemplate(use, key.versionId));
    } catch (error) {
      const code = pkcs11Code(error);
      if (code !== undefined && UNWRAP_REFUSED.has(code)) {
        throw internalFailure('The wrapped key material of this version does not unwrap under the HSM master key (damaged or altered blob, or another token).');
      }
      throw error;
    }
    // DESIGN.md's lesson: read the protection back; a readable object is destroyed and refused.
    if (!isUnreadable(this.p11, owner, handle)) {
      this.p11.C_DestroyObject(owner, handle);
      throw internalFailure('The HSM unwrapped a version key whose value is readable (CKA_SENSITIVE/CKA_EXTRACTABLE not honoured); refused.');
    }
    return handle;
  }
}

/** What SoftHSM2 answers for a blob that fails AES-KWP's integrity check (measured: CKR_GENERAL_ERROR). */
const UNWRAP_REFUSED = new Set<number>([
  pkcs11js.CKR_WRAPPED_KEY_INVALID,
  pkcs11js.CKR_WRAPPED_KEY_LEN_RANGE,
  pkcs11js.CKR_GENERAL_ERROR,
  pkcs11js.CKR_FUNCTION_FAILED,
  pkcs11js.CKR_ENCRYPTED_DATA_INVALID,
]);

const WRAPPED_KEY_USES: readonly WrappedKeyUse[] = ['aes', 'hmac', 'rsa-sign', 'rsa-decrypt', 'ec-sign'];
const cacheKey = (use: WrappedKeyUse, versionId: string) => `${use}:${versionId}`;

const isTrue = (value: unknown): boolean => (Buffer.isBuffer(value) ? value[0] === 1 : value === true);

/** Usage attributes by use: AES keys encrypt/decrypt (and CMAC-fingerprint), HMAC keys sign/verify. */
function usage(use: WrappedKeyUse): pkcs11js.Template {
  if (use === 'rsa-sign' || use === 'rsa-decrypt' || use === 'ec-sign') {
    // A private half, single-purpose as its token-object twin (mechanisms.ts versionKeyPairTemplates).
    return [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: use === 'ec-sign' ? pkcs11js.CKK_EC : pkcs11js.CKK_RSA },
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: use === 'rsa-decrypt' },
      { type: pkcs11js.CKA_SIGN, value: use !== 'rsa-decrypt' },
      { type: pkcs11js.CKA_UNWRAP, value: false },
    ];
  }
  const aes = use === 'aes';
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: aes ? pkcs11js.CKK_AES : pkcs11js.CKK_GENERIC_SECRET },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_ENCRYPT, value: aes },
    { type: pkcs11js.CKA_DECRYPT, value: aes },
    // AES: CKA_SIGN for the in-token CMAC fingerprint of imported material; HMAC: the MAC itself.
    { type: pkcs11js.CKA_SIGN, value: true },
    { type: pkcs11js.CKA_VERIFY, value: !aes },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
  ];
}

/**
 * A version key at birth (generation, or BYOK unwrap): a session object, sensitive, that may
 * leave the token only wrapped by a trusted key. CKA_ID/label = version id, so a leftover
 * (it is destroyed in the same call) could be told apart.
 */
export function wrappableTemplate(use: WrappedKeyUse, versionId: string, valueLength?: number, value?: Buffer): pkcs11js.Template {
  return [
    ...usage(use),
    { type: pkcs11js.CKA_EXTRACTABLE, value: true },
    { type: pkcs11js.CKA_WRAP_WITH_TRUSTED, value: true },
    { type: pkcs11js.CKA_ID, value: Buffer.from(versionId, 'utf8') },
    { type: pkcs11js.CKA_LABEL, value: versionId },
    ...(valueLength !== undefined ? [{ type: pkcs11js.CKA_VALUE_LEN, value: valueLength }] : []),
    ...(value !== undefined ? [{ type: pkcs11js.CKA_VALUE, value }] : []),
  ];
}

/** A version key unwrapped for use: a session object that can never leave the token. */
function unwrappedTemplate(use: WrappedKeyUse, versionId: string): pkcs11js.Template {
  return [...usage(use), { type: pkcs11js.CKA_EXTRACTABLE, value: false }, { type: pkcs11js.CKA_ID, value: Buffer.from(versionId, 'utf8') }];
}
