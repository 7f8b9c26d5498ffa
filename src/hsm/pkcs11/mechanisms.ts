import pkcs11js from 'pkcs11js';
import { PSS_SALT_BYTES } from '../../domain/asymmetric.js';
import type { MacHash } from '../../domain/key-spec.js';
import type { WrappingAlgorithm } from '../hsm.js';

/** PKCS#11 v2.40 CKZ_DATA_SPECIFIED (pkcs11js does not export it). */
const CKZ_DATA_SPECIFIED = 1;

/** Mechanism and template builders: plain records, as graphene keeps them. */

export const aesGcm = (iv: Buffer, aad: Buffer | undefined): pkcs11js.Mechanism => ({
  mechanism: pkcs11js.CKM_AES_GCM,
  parameter: {
    type: pkcs11js.CK_PARAMS_AES_GCM,
    iv,
    ivBits: iv.length * 8,
    aad: aad ?? Buffer.alloc(0),
    tagBits: 128,
  } as pkcs11js.GcmParams,
});

const oaep = (hashAlg: number, mgf: number): pkcs11js.Mechanism => ({
  mechanism: pkcs11js.CKM_RSA_PKCS_OAEP,
  parameter: {
    type: pkcs11js.CK_PARAMS_RSA_OAEP,
    hashAlg,
    mgf,
    source: CKZ_DATA_SPECIFIED,
  } as pkcs11js.RsaOAEP,
});

/** The native unwrap mechanism for each BYOK wrapping algorithm. */
export function unwrapMechanism(algorithm: WrappingAlgorithm): pkcs11js.Mechanism {
  switch (algorithm) {
    case 'RSAES_OAEP_SHA_1':
      return oaep(pkcs11js.CKM_SHA_1, pkcs11js.CKG_MGF1_SHA1);
    case 'RSAES_OAEP_SHA_256':
      return oaep(pkcs11js.CKM_SHA256, pkcs11js.CKG_MGF1_SHA256);
    case 'RSAES_PKCS1_V1_5':
      return { mechanism: pkcs11js.CKM_RSA_PKCS };
  }
}

export const rsaX509: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_RSA_X_509 };
export const aesCmac: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_AES_CMAC };
export const aesEcb: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_AES_ECB };
export const aesKeyWrapPad: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD };
export const sha256Hmac: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_SHA256_HMAC };

export interface SecretKeyOptions {
  id?: string;
  label?: string;
  token: boolean;
  /** Transient session keys only: CKA_VALUE may be read (SOFTWARE-tier import, probes). */
  readable?: boolean;
  /** Transient session keys only: may be wrapped (under the root key, to measure its length). */
  extractable?: boolean;
  valueLength?: number;
  value?: Buffer;
  encrypt?: boolean;
  sign?: boolean;
  wrap?: boolean;
}

/** Template for an AES secret key. Token (persistent) keys are always sensitive and non-extractable. */
export function aesKeyTemplate(o: SecretKeyOptions): pkcs11js.Template {
  const readable = o.readable === true && !o.token;
  const extractable = readable || (o.extractable === true && !o.token);
  const template: pkcs11js.Template = [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_TOKEN, value: o.token },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: !readable },
    { type: pkcs11js.CKA_EXTRACTABLE, value: extractable },
    { type: pkcs11js.CKA_ENCRYPT, value: o.encrypt ?? true },
    { type: pkcs11js.CKA_DECRYPT, value: o.encrypt ?? true },
    { type: pkcs11js.CKA_SIGN, value: o.sign ?? false },
    { type: pkcs11js.CKA_VERIFY, value: o.sign ?? false },
    { type: pkcs11js.CKA_WRAP, value: o.wrap ?? false },
    { type: pkcs11js.CKA_UNWRAP, value: o.wrap ?? false },
  ];
  if (o.id !== undefined) template.push({ type: pkcs11js.CKA_ID, value: Buffer.from(o.id, 'utf8') });
  if (o.label !== undefined) template.push({ type: pkcs11js.CKA_LABEL, value: o.label });
  if (o.valueLength !== undefined) template.push({ type: pkcs11js.CKA_VALUE_LEN, value: o.valueLength });
  if (o.value !== undefined) template.push({ type: pkcs11js.CKA_VALUE, value: o.value });
  return template;
}

/** Lookup template for a secret key by CKA_ID. */
export const secretKeyById = (id: string): pkcs11js.Template => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
  { type: pkcs11js.CKA_TOKEN, value: true },
  { type: pkcs11js.CKA_ID, value: Buffer.from(id, 'utf8') },
];

export const privateKeyById = (id: string): pkcs11js.Template => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
  { type: pkcs11js.CKA_TOKEN, value: true },
  { type: pkcs11js.CKA_ID, value: Buffer.from(id, 'utf8') },
];

/**
 * RSA-2048 wrapping pair for BYOK. The private half is sensitive, non-extractable and used to
 * unwrap; it may decrypt (CKM_RSA_X_509) only when the host OAEP fallback is allowed, because
 * that fallback needs raw RSA. The public half is a session object: its DER is kept in Postgres.
 */
export function wrappingKeyPairTemplates(id: string, allowRawDecrypt: boolean, token = true) {
  const idBuf = Buffer.from(id, 'utf8');
  const publicTemplate: pkcs11js.Template = [
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_ENCRYPT, value: true },
    { type: pkcs11js.CKA_WRAP, value: true },
    { type: pkcs11js.CKA_MODULUS_BITS, value: 2048 },
    { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
    { type: pkcs11js.CKA_ID, value: idBuf },
  ];
  const privateTemplate: pkcs11js.Template = [
    { type: pkcs11js.CKA_TOKEN, value: token },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: true },
    { type: pkcs11js.CKA_DECRYPT, value: allowRawDecrypt },
    { type: pkcs11js.CKA_SIGN, value: false },
    { type: pkcs11js.CKA_ID, value: idBuf },
    { type: pkcs11js.CKA_LABEL, value: id },
  ];
  return { publicTemplate, privateTemplate };
}

export const rsaKeyPairGen: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN };
export const aesKeyGen: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_AES_KEY_GEN };

// ---- version key pairs (asymmetric keys, issue 15) --------------------------------------------

export const ecKeyPairGen: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN };
export const ecdsa: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_ECDSA };
/** PKCS#1 v1.5 over DigestInfo ‖ digest (the caller prefixes): CKM_SHA256_RSA_PKCS would hash again. */
export const rsaPkcs: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_RSA_PKCS };
/** RSA-PSS over a precomputed SHA-256 digest, MGF1-SHA256, salt 32 (Alibaba's RSA_PSS_SHA_256). */
export const rsaPssSha256: pkcs11js.Mechanism = {
  mechanism: pkcs11js.CKM_RSA_PKCS_PSS,
  parameter: { type: pkcs11js.CK_PARAMS_RSA_PSS, hashAlg: pkcs11js.CKM_SHA256, mgf: pkcs11js.CKG_MGF1_SHA256, saltLen: PSS_SALT_BYTES } as pkcs11js.RsaPSS,
};
/** Native RSA-OAEP decryption; the same parameters as the BYOK unwrap mechanisms. */
export const oaepDecrypt = (hash: 'sha1' | 'sha256'): pkcs11js.Mechanism =>
  unwrapMechanism(hash === 'sha1' ? 'RSAES_OAEP_SHA_1' : 'RSAES_OAEP_SHA_256');

/** Lookup template for the public half of a version pair by CKA_ID. */
export const publicKeyById = (id: string): pkcs11js.Template => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
  { type: pkcs11js.CKA_TOKEN, value: true },
  { type: pkcs11js.CKA_ID, value: Buffer.from(id, 'utf8') },
];

export type KeyPairShape =
  | { kind: 'rsa'; bits: number; use: 'decrypt' | 'sign' }
  | { kind: 'ec'; params: Buffer };

/**
 * A version key pair: both halves token objects with CKA_ID = version id. The private half
 * is sensitive, non-extractable and single-purpose (decrypt or sign), and never unwraps —
 * CKA_UNWRAP=false is what tells it from a BYOK wrapping pair in the inventory.
 * `token: false` makes session objects (the capability probe).
 */
export function versionKeyPairTemplates(id: string, shape: KeyPairShape, token = true) {
  const idBuf = Buffer.from(id, 'utf8');
  const decrypt = shape.kind === 'rsa' && shape.use === 'decrypt';
  const publicTemplate: pkcs11js.Template = [
    { type: pkcs11js.CKA_TOKEN, value: token },
    { type: pkcs11js.CKA_PRIVATE, value: false },
    { type: pkcs11js.CKA_ENCRYPT, value: decrypt },
    { type: pkcs11js.CKA_VERIFY, value: !decrypt },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_ID, value: idBuf },
    { type: pkcs11js.CKA_LABEL, value: id },
    ...(shape.kind === 'rsa'
      ? [
          { type: pkcs11js.CKA_MODULUS_BITS, value: shape.bits },
          // 65537, the only exponent Alibaba's RSA keys use.
          { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
        ]
      : [{ type: pkcs11js.CKA_EC_PARAMS, value: shape.params }]),
  ];
  const privateTemplate: pkcs11js.Template = [
    { type: pkcs11js.CKA_TOKEN, value: token },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_DECRYPT, value: decrypt },
    { type: pkcs11js.CKA_SIGN, value: !decrypt },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_ID, value: idBuf },
    { type: pkcs11js.CKA_LABEL, value: id },
  ];
  return { publicTemplate, privateTemplate };
}

// ---- HMAC version keys (MAC keys, issue 15) ---------------------------------------------------

/** The HMAC mechanism for each hash (output not truncated: CKM_SHA*_HMAC, not the _GENERAL forms). */
export const hmacMechanism = (hash: MacHash): pkcs11js.Mechanism => ({
  mechanism:
    hash === 'sha224'
      ? pkcs11js.CKM_SHA224_HMAC
      : hash === 'sha256'
        ? pkcs11js.CKM_SHA256_HMAC
        : hash === 'sha384'
          ? pkcs11js.CKM_SHA384_HMAC
          : pkcs11js.CKM_SHA512_HMAC,
});
export const genericSecretKeyGen: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN };

/**
 * An HMAC key: CKK_GENERIC_SECRET that may only sign and verify (never encrypt, wrap or
 * derive), private, sensitive and non-extractable, CKA_ID = version id. `value` creates it
 * from known bytes (the capability probe, and tests that prove the MAC against node:crypto);
 * otherwise C_GenerateKey makes `valueLength` bytes. `token: false` makes a session object.
 */
export function hmacKeyTemplate(o: { id?: string; token: boolean; valueLength?: number; value?: Buffer }): pkcs11js.Template {
  const template: pkcs11js.Template = [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
    { type: pkcs11js.CKA_TOKEN, value: o.token },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_SIGN, value: true },
    { type: pkcs11js.CKA_VERIFY, value: true },
    { type: pkcs11js.CKA_ENCRYPT, value: false },
    { type: pkcs11js.CKA_DECRYPT, value: false },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
  ];
  if (o.id !== undefined) {
    template.push({ type: pkcs11js.CKA_ID, value: Buffer.from(o.id, 'utf8') }, { type: pkcs11js.CKA_LABEL, value: o.id });
  }
  if (o.valueLength !== undefined) template.push({ type: pkcs11js.CKA_VALUE_LEN, value: o.valueLength });
  if (o.value !== undefined) template.push({ type: pkcs11js.CKA_VALUE, value: o.value });
  return template;
}
