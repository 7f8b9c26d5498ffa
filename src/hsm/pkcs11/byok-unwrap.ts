/**
 * BYOK (seed 000): the wrapping pairs and the unwrap of imported material inside the token,
 * natively or — for RSAES_OAEP_SHA_256 on a token without it — through DESIGN.md's documented
 * host fallback. Also the raw-RSA-plus-host-OAEP primitive AsymmetricDecrypt shares with it.
 */
import pkcs11js from 'pkcs11js';
import { KmsError, invalidKeyMaterial, unavailable } from '../../domain/errors.js';
import { type OaepHash, decodeOaep } from '../../domain/oaep.js';
import type { HsmCapabilities, ImportUnwrapRequest, ImportUnwrapResult, UnwrapPath, WrappingAlgorithm } from '../hsm.js';
import { isGeneralError, translatePkcs11Error } from './errors.js';
import * as m from './mechanisms.js';
import type { ObjectHandleCache, SessionRunner } from './object-cache.js';
import { findObjects } from './object-inventory.js';
import { rsaPublicKeyDer } from './public-keys.js';
import { retryingTransientTokenFailure } from './token-object-retry.js';
import { type WrappedKeys, wrappableTemplate } from './wrapped-keys.js';

type Handle = pkcs11js.Handle;

/** Fixed block whose MAC under a candidate key identifies the material without revealing it. */
const FINGERPRINT_BLOCK = Buffer.from('hsm-kms:material', 'ascii'); // 16 bytes
const RSA_MODULUS_BYTES = 256;

export const wrappingHandleKey = (id: string) => `wrapping:${id}`;

export class ByokUnwrap {
  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly run: SessionRunner,
    private readonly cache: ObjectHandleCache,
    private readonly capabilities: HsmCapabilities,
    /** The root key's current handle (it changes when the HSM adapter logs in again). */
    private readonly rootKey: () => Handle,
    private readonly importStrict: boolean,
    private readonly wrappedKeys: WrappedKeys,
  ) {}

  async generateWrappingKeyPair(wrappingKeyId: string): Promise<{ publicKeyDer: Buffer }> {
    const { publicTemplate, privateTemplate } = m.wrappingKeyPairTemplates(wrappingKeyId, !this.importStrict);
    return this.run('generateWrappingKeyPair', async (session) => {
      const pair = await retryingTransientTokenFailure(this.p11, session, wrappingKeyId, () =>
        this.p11.C_GenerateKeyPairAsync(session, m.rsaKeyPairGen, publicTemplate, privateTemplate),
      );
      try {
        const publicKeyDer = rsaPublicKeyDer(this.p11, session, pair.publicKey);
        this.cache.set(wrappingHandleKey(wrappingKeyId), pair.privateKey);
        return { publicKeyDer };
      } finally {
        this.p11.C_DestroyObject(session, pair.publicKey);
      }
    });
  }

  async destroyWrappingKeyPair(wrappingKeyId: string): Promise<void> {
    this.cache.forget(wrappingHandleKey(wrappingKeyId));
    await this.run('destroyWrappingKeyPair', (session) => {
      for (const handle of findObjects(this.p11, session, m.privateKeyById(wrappingKeyId))) {
        this.p11.C_DestroyObject(session, handle);
      }
    });
  }

  unwrapPathFor(algorithm: WrappingAlgorithm): UnwrapPath | undefined {
    const caps = this.capabilities;
    const native: Record<WrappingAlgorithm, boolean> = {
      RSAES_OAEP_SHA_1: caps.oaepSha1Unwrap,
      RSAES_OAEP_SHA_256: caps.oaepSha256Unwrap,
      RSAES_PKCS1_V1_5: caps.pkcs1v15Unwrap,
    };
    if (native[algorithm]) return 'native';
    // DESIGN.md: the host fallback exists for OAEP-SHA256 only, and strict mode refuses it.
    if (algorithm === 'RSAES_OAEP_SHA_256' && !this.importStrict && caps.rsaX509) return 'host-oaep-decode';
    return undefined;
  }

  async unwrapImportedMaterial(request: ImportUnwrapRequest): Promise<ImportUnwrapResult> {
    const path = this.unwrapPathFor(request.algorithm);
    if (path === undefined) throw invalidKeyMaterial();
    // Patient: the pair may have been made a moment ago by another node (issue 19).
    const privateKey = await this.cache.findPatiently(wrappingHandleKey(request.wrappingKeyId), m.privateKeyById(request.wrappingKeyId));
    // The import token named a pair the store has issued: not finding it is the token's (or
    // its cross-process visibility's) fault, never the material's — a retryable 503.
    if (privateKey === undefined) throw missingWrappingKey();
    // Looked up before anything is unwrapped: a missing master is a clear 503, not InvalidKeyMaterial.
    const master = request.target.kind === 'wrapped' ? await this.wrappedKeys.masterKey() : undefined;
    return this.run('unwrapImportedMaterial', async (session) => {
      try {
        return path === 'native'
          ? await this.unwrapNative(session, privateKey, request, master)
          : await this.unwrapOnHost(session, privateKey, request, master);
      } catch (error) {
        throw uniformUnwrapError(error);
      }
    });
  }

  /** AES-CMAC (or AES-ECB) of a fixed block under `key`, computed inside the token. */
  fingerprint(session: Handle, key: Handle): Buffer {
    if (this.capabilities.aesCmac) {
      this.p11.C_SignInit(session, m.aesCmac, key);
      return Buffer.from(this.p11.C_Sign(session, FINGERPRINT_BLOCK, Buffer.alloc(16)));
    }
    this.p11.C_EncryptInit(session, m.aesEcb, key);
    return Buffer.from(this.p11.C_Encrypt(session, FINGERPRINT_BLOCK, Buffer.alloc(16)));
  }

  /**
   * Native C_UnwrapKey. SoftHSM2 sets no CKA_VALUE_LEN on an unwrapped AES key and refuses one
   * in the template (CKR_ATTRIBUTE_READ_ONLY), so a 16-byte material would silently become an
   * AES-128 key of an AES-256 spec. The length is therefore measured on a transient twin
   * (unwrapped from the same input, wrapped under the root key with AES-KWP, whose output
   * length gives the key length); the persistent object is unwrapped straight from the RSA
   * ciphertext into a sensitive, non-extractable token key.
   */
  private async unwrapNative(session: Handle, privateKey: Handle, request: ImportUnwrapRequest, master: Handle | undefined): Promise<ImportUnwrapResult> {
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
    // The material unwrapped and measured right: what fails from here is the token, not the material.
    return storingVerifiedMaterial(async () => {
      const target = request.target;
      if (target.kind === 'token') {
        const key = await retryingTransientTokenFailure(this.p11, session, target.versionId, () =>
          this.p11.C_UnwrapKeyAsync(session, mechanism, privateKey, request.encryptedMaterial, importedKeyTemplate(request)),
        );
        this.cache.set(target.versionId, key);
      }
      let wrapped: Buffer | undefined;
      if (target.kind === 'wrapped' && master !== undefined) {
        // HsmEncryptedDatabase: a transient wrap-with-trusted object, wrapped under the master, destroyed.
        const key = await this.p11.C_UnwrapKeyAsync(session, mechanism, privateKey, request.encryptedMaterial, importedKeyTemplate(request));
        try {
          wrapped = await this.wrappedKeys.wrapUnderMaster(session, master, key);
        } finally {
          this.p11.C_DestroyObject(session, key);
        }
      }
      return { path: 'native', fingerprint, ...(material ? { material } : {}), ...(wrapped ? { wrapped } : {}) };
    });
  }

  /**
   * The documented fallback for tokens without OAEP-SHA256 (SoftHSM2 2.6.1): raw RSA inside
   * the token, EME-OAEP decoding on the host in constant time, then C_CreateObject of a
   * sensitive key. Every intermediate buffer is zeroed before returning.
   */
  private async unwrapOnHost(session: Handle, privateKey: Handle, request: ImportUnwrapRequest, master: Handle | undefined): Promise<ImportUnwrapResult> {
    if (request.encryptedMaterial.length !== RSA_MODULUS_BYTES) throw invalidKeyMaterial();
    let decoded: Buffer | undefined;
    try {
      decoded = await rawRsaOaepDecrypt(this.p11, session, privateKey, request.encryptedMaterial, RSA_MODULUS_BYTES, 'sha256');
      if (decoded.length !== request.materialLength) throw invalidKeyMaterial();
      const verified = decoded;
      // The material decoded right: what fails from here is the token, not the material.
      return await storingVerifiedMaterial(async () => {
        const target = request.target;
        const create = () => this.p11.C_CreateObject(session, importedKeyTemplate(request, verified));
        const key = target.kind === 'token' ? await retryingTransientTokenFailure(this.p11, session, target.versionId, create) : create();
        let keep = false;
        try {
          const fingerprint = this.fingerprint(session, key);
          if (target.kind === 'token') {
            this.cache.set(target.versionId, key);
            keep = true;
          }
          const material = target.kind === 'host' ? Buffer.from(verified) : undefined;
          const wrapped = target.kind === 'wrapped' && master !== undefined ? await this.wrappedKeys.wrapUnderMaster(session, master, key) : undefined;
          return { path: 'host-oaep-decode', fingerprint, ...(material ? { material } : {}), ...(wrapped ? { wrapped } : {}) };
        } finally {
          if (!keep) this.p11.C_DestroyObject(session, key);
        }
      });
    } finally {
      decoded?.fill(0);
    }
  }

  /** Length in bytes of an extractable AES key: AES-KWP output is 8 bytes longer than the padded key. */
  private measureKeyLength(session: Handle, key: Handle): number {
    const wrapped = this.p11.C_WrapKey(session, m.aesKeyWrapPad, this.rootKey(), key, Buffer.alloc(64));
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
}

/**
 * CKM_RSA_X_509 inside the token, then EME-OAEP decoding on the host (constant-time checks
 * in domain/oaep.ts). `modulusBytes` is k; the raw output is left-padded to k bytes because
 * tokens strip leading zeros. Intermediate buffers are zeroed; the caller zeroes the result.
 * Throws whatever the token or the decoder throws: callers turn it into their one uniform error.
 */
export async function rawRsaOaepDecrypt(
  p11: pkcs11js.PKCS11,
  session: Handle,
  privateKey: Handle,
  ciphertext: Buffer,
  modulusBytes: number,
  hash: OaepHash,
): Promise<Buffer> {
  p11.C_DecryptInit(session, m.rsaX509, privateKey);
  const raw = await p11.C_DecryptAsync(session, ciphertext, Buffer.alloc(modulusBytes));
  const em = Buffer.alloc(modulusBytes);
  raw.copy(em, modulusBytes - raw.length);
  raw.fill(0);
  try {
    return decodeOaep(em, hash);
  } finally {
    em.fill(0);
  }
}

function importedKeyTemplate(request: ImportUnwrapRequest, value?: Buffer): pkcs11js.Template {
  const target = request.target;
  // HsmEncryptedDatabase: sensitive, extractable only wrapped by the trusted master.
  if (target.kind === 'wrapped') return wrappableTemplate('aes', target.versionId, undefined, value);
  return m.aesKeyTemplate({
    token: target.kind === 'token',
    // CKA_SIGN lets the token compute the CMAC fingerprint of the material.
    sign: true,
    ...(target.kind === 'token' ? { id: target.versionId, label: target.versionId } : {}),
    ...(value ? { value } : {}),
  });
}

/** The wrapping pair an issued import token names is not (yet) visible in the token. */
const missingWrappingKey = () =>
  unavailable('The wrapping key of this import token was not found in the HSM yet (another node may have just created it); retry.');

/**
 * Runs the steps that store material already unwrapped and verified (length, decoding): a
 * transient token failure there (CKR_GENERAL_ERROR once the creation's own tries are spent, a
 * lost session) is the token's, answered as a retryable 503 — not as InvalidKeyMaterial, which
 * would tell the client its good material is bad. (The 503 passes uniformUnwrapError as is; any
 * other failure stays the uniform InvalidKeyMaterial, as before.)
 */
async function storingVerifiedMaterial<T>(store: () => Promise<T>): Promise<T> {
  try {
    return await store();
  } catch (error) {
    const translated = translatePkcs11Error(error, 'importKeyMaterial');
    throw translated.kind === 'internal' ? error : translated;
  }
}

/** No oracle: every unwrap failure (padding, length, wrong key, tampering) is one error. */
function uniformUnwrapError(error: unknown): KmsError {
  if (error instanceof KmsError && error.kind === 'unavailable') return error;
  // SoftHSM2 answers some bad ciphertexts with CKR_GENERAL_ERROR: still the one uniform error.
  if (isGeneralError(error)) return invalidKeyMaterial();
  const translated = translatePkcs11Error(error, 'unwrap');
  if (translated.kind === 'unavailable') return translated;
  return invalidKeyMaterial();
}
