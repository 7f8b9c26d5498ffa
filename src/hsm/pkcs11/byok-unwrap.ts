/**
 * BYOK (seed 000): the wrapping pairs and the unwrap of imported material inside the token,
 * natively or — for RSAES_OAEP_SHA_256 on a token without it — through DESIGN.md's documented
 * host fallback. Also the raw-RSA-plus-host-OAEP primitive AsymmetricDecrypt shares with it.
 */
import pkcs11js from 'pkcs11js';
import { KmsError, invalidKeyMaterial } from '../../domain/errors.js';
import { type OaepHash, decodeOaep } from '../../domain/oaep.js';
import type { HsmCapabilities, ImportUnwrapRequest, ImportUnwrapResult, UnwrapPath, WrappingAlgorithm } from '../hsm.js';
import { translatePkcs11Error } from './errors.js';
import * as m from './mechanisms.js';
import type { ObjectHandleCache, SessionRunner } from './object-cache.js';
import { findObjects } from './object-inventory.js';
import { rsaPublicKeyDer } from './public-keys.js';

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
    private readonly rootKey: Handle,
    private readonly importStrict: boolean,
  ) {}

  async generateWrappingKeyPair(wrappingKeyId: string): Promise<{ publicKeyDer: Buffer }> {
    const { publicTemplate, privateTemplate } = m.wrappingKeyPairTemplates(wrappingKeyId, !this.importStrict);
    return this.run('generateWrappingKeyPair', async (session) => {
      const pair = await this.p11.C_GenerateKeyPairAsync(session, m.rsaKeyPairGen, publicTemplate, privateTemplate);
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
    const privateKey = await this.cache.find(wrappingHandleKey(request.wrappingKeyId), m.privateKeyById(request.wrappingKeyId));
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
      this.cache.set(request.target.versionId, key);
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
    let decoded: Buffer | undefined;
    try {
      decoded = await rawRsaOaepDecrypt(this.p11, session, privateKey, request.encryptedMaterial, RSA_MODULUS_BYTES, 'sha256');
      if (decoded.length !== request.materialLength) throw invalidKeyMaterial();
      const key = this.p11.C_CreateObject(session, importedKeyTemplate(request, decoded));
      let keep = false;
      try {
        const fingerprint = this.fingerprint(session, key);
        if (request.target.kind === 'token') {
          this.cache.set(request.target.versionId, key);
          keep = true;
        }
        const material = request.target.kind === 'host' ? Buffer.from(decoded) : undefined;
        return { path: 'host-oaep-decode', fingerprint, ...(material ? { material } : {}) };
      } finally {
        if (!keep) this.p11.C_DestroyObject(session, key);
      }
    } finally {
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
