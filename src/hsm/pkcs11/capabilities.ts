import { constants, createCipheriv, createHash, createHmac, createPublicKey, publicEncrypt, randomBytes, verify } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { HsmCapabilities, WrappingAlgorithm } from '../hsm.js';
import { PSS_SALT_BYTES } from '../../domain/asymmetric.js';
import { CURVE_OID_DER, type EcCurve, MAC_HASH_BYTES, type MacHash } from '../../domain/key-spec.js';
import * as m from './mechanisms.js';
import { ecPublicKeyDer, rsaPublicKeyDer } from './public-keys.js';
import { signDigest } from './version-keys.js';

type Handle = pkcs11js.Handle;

/**
 * Learns what the token really does by trying each operation with throwaway session objects,
 * not by reading C_GetMechanismList: SoftHSM2 2.6.1 lists CKM_RSA_PKCS_OAEP but answers
 * CKR_ARGUMENTS_BAD for SHA-256 parameters (DESIGN.md, "Known HSM capability gap").
 * Every check compares the token's result with node:crypto's, so "works" means "is correct".
 */
export async function probeCapabilities(p11: pkcs11js.PKCS11, session: Handle): Promise<HsmCapabilities> {
  const created: Handle[] = [];
  const track = (h: Handle) => {
    created.push(h);
    return h;
  };
  try {
    const material = randomBytes(32);
    const aesKey = track(
      p11.C_CreateObject(session, m.aesKeyTemplate({ token: false, value: material, sign: true, wrap: true })),
    );
    const pair = p11.C_GenerateKeyPair(
      session,
      m.rsaKeyPairGen,
      ...Object.values(m.wrappingKeyPairTemplates('hsm-kms:probe', true, false)) as [pkcs11js.Template, pkcs11js.Template],
    );
    track(pair.publicKey);
    track(pair.privateKey);
    const [modulus, exponent] = p11.C_GetAttributeValue(session, pair.publicKey, [
      { type: pkcs11js.CKA_MODULUS },
      { type: pkcs11js.CKA_PUBLIC_EXPONENT },
    ]);
    const publicKey = createPublicKey({
      key: {
        kty: 'RSA',
        n: (modulus?.value as Buffer).toString('base64url'),
        e: (exponent?.value as Buffer).toString('base64url'),
      },
      format: 'jwk',
    });

    const unwrapWorks = (algorithm: WrappingAlgorithm): boolean =>
      attempt(() => {
        const secret = randomBytes(32);
        const encrypted =
          algorithm === 'RSAES_PKCS1_V1_5'
            ? publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, secret)
            : publicEncrypt(
                {
                  key: publicKey,
                  padding: constants.RSA_PKCS1_OAEP_PADDING,
                  oaepHash: algorithm === 'RSAES_OAEP_SHA_1' ? 'sha1' : 'sha256',
                },
                secret,
              );
        const key = track(
          p11.C_UnwrapKey(session, m.unwrapMechanism(algorithm), pair.privateKey, encrypted, m.aesKeyTemplate({ token: false })),
        );
        return ecbBlock(p11, session, key).equals(nodeEcbBlock(secret));
      });

    const decryptWorks = (hash: 'sha1' | 'sha256'): boolean =>
      attempt(() => {
        const secret = randomBytes(32);
        const encrypted = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, secret);
        p11.C_DecryptInit(session, m.oaepDecrypt(hash), pair.privateKey);
        return Buffer.from(p11.C_Decrypt(session, encrypted, Buffer.alloc(256))).equals(secret);
      });

    /** A session sign pair, a SHA-256 digest signed in the token, verified by node:crypto. */
    const digest = createHash('sha256').update('hsm-kms probe').digest();
    const signatureVerifies = async (shape: m.KeyPairShape, curve: EcCurve | undefined): Promise<boolean> => {
      try {
        const { publicTemplate, privateTemplate } = m.versionKeyPairTemplates('hsm-kms:probe', shape, false);
        const probe = p11.C_GenerateKeyPair(session, shape.kind === 'rsa' ? m.rsaKeyPairGen : m.ecKeyPairGen, publicTemplate, privateTemplate);
        track(probe.publicKey);
        track(probe.privateKey);
        if (curve === 'SM2') return true; // only the curve: see HsmCapabilities.ecSm2Curve
        const spki = curve ? ecPublicKeyDer(p11, session, probe.publicKey, curve) : rsaPublicKeyDer(p11, session, probe.publicKey);
        const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
        const algorithm = curve ? 'ECDSA_SHA_256' : 'RSA_PSS_SHA_256';
        const signature = await signDigest(p11, session, probe.privateKey, algorithm, digest);
        const message = Buffer.from('hsm-kms probe');
        return curve
          ? verify('sha256', message, key, signature)
          : verify('sha256', message, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_BYTES }, signature);
      } catch {
        return false;
      }
    };

    /** A session HMAC key of known value: the token's MAC must equal node:crypto's. */
    const hmacWorks = (hash: MacHash): boolean =>
      attempt(() => {
        const value = randomBytes(MAC_HASH_BYTES[hash]);
        const key = track(p11.C_CreateObject(session, m.hmacKeyTemplate({ token: false, value })));
        const message = Buffer.from('hsm-kms probe');
        p11.C_SignInit(session, m.hmacMechanism(hash), key);
        const mac = Buffer.from(p11.C_Sign(session, message, Buffer.alloc(64)));
        return mac.equals(createHmac(hash, value).update(message).digest());
      });

    return {
      hmacSha224: hmacWorks('sha224'),
      hmacSha256: hmacWorks('sha256'),
      hmacSha384: hmacWorks('sha384'),
      hmacSha512: hmacWorks('sha512'),
      oaepSha1Decrypt: decryptWorks('sha1'),
      oaepSha256Decrypt: decryptWorks('sha256'),
      // 1024 bits keep the probe fast; PSS with a 32-byte salt needs only 66 bytes of modulus.
      rsaPss: await signatureVerifies({ kind: 'rsa', bits: 1024, use: 'sign' }, undefined),
      ecdsaP256: await signatureVerifies({ kind: 'ec', params: CURVE_OID_DER['P-256'] }, 'P-256'),
      ecdsaSecp256k1: await signatureVerifies({ kind: 'ec', params: CURVE_OID_DER.secp256k1 }, 'secp256k1'),
      ecSm2Curve: await signatureVerifies({ kind: 'ec', params: CURVE_OID_DER.SM2 }, 'SM2'),
      aesGcm: attempt(() => {
        const iv = randomBytes(12);
        const aad = Buffer.from('probe');
        const plain = randomBytes(40);
        p11.C_EncryptInit(session, m.aesGcm(iv, aad), aesKey);
        const sealed = p11.C_Encrypt(session, plain, Buffer.alloc(plain.length + 16));
        p11.C_DecryptInit(session, m.aesGcm(iv, aad), aesKey);
        const opened = p11.C_Decrypt(session, sealed, Buffer.alloc(sealed.length));
        const cipher = createCipheriv('aes-256-gcm', material, iv);
        cipher.setAAD(aad);
        const expected = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
        return opened.equals(plain) && Buffer.from(sealed).equals(expected);
      }),
      oaepSha1Unwrap: unwrapWorks('RSAES_OAEP_SHA_1'),
      oaepSha256Unwrap: unwrapWorks('RSAES_OAEP_SHA_256'),
      pkcs1v15Unwrap: unwrapWorks('RSAES_PKCS1_V1_5'),
      rsaX509: attempt(() => {
        const secret = randomBytes(32);
        const encrypted = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, secret);
        p11.C_DecryptInit(session, m.rsaX509, pair.privateKey);
        const raw = p11.C_Decrypt(session, encrypted, Buffer.alloc(256));
        return raw.length > 0 && raw.length <= 256;
      }),
      aesKeyWrapPad: attempt(() => {
        const inner = track(p11.C_CreateObject(session, m.aesKeyTemplate({ token: false, readable: true, value: randomBytes(24) })));
        const wrapped = p11.C_WrapKey(session, m.aesKeyWrapPad, aesKey, inner, Buffer.alloc(64));
        const back = track(p11.C_UnwrapKey(session, m.aesKeyWrapPad, aesKey, wrapped, m.aesKeyTemplate({ token: false })));
        return ecbBlock(p11, session, back).equals(ecbBlock(p11, session, inner));
      }),
      aesCmac: attempt(() => {
        p11.C_SignInit(session, m.aesCmac, aesKey);
        const a = Buffer.from(p11.C_Sign(session, Buffer.alloc(16), Buffer.alloc(16)));
        p11.C_SignInit(session, m.aesCmac, aesKey);
        const b = Buffer.from(p11.C_Sign(session, Buffer.alloc(16), Buffer.alloc(16)));
        return a.length === 16 && a.equals(b);
      }),
    };
  } finally {
    for (const handle of created) {
      try {
        p11.C_DestroyObject(session, handle);
      } catch {
        // Session objects vanish with the session anyway.
      }
    }
  }
}

function attempt(check: () => boolean): boolean {
  try {
    return check();
  } catch {
    return false;
  }
}

function ecbBlock(p11: pkcs11js.PKCS11, session: Handle, key: Handle): Buffer {
  p11.C_EncryptInit(session, m.aesEcb, key);
  return Buffer.from(p11.C_Encrypt(session, Buffer.alloc(16), Buffer.alloc(16)));
}

function nodeEcbBlock(key: Buffer): Buffer {
  const cipher = createCipheriv(`aes-${key.length * 8}-ecb`, key, null);
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(Buffer.alloc(16)), cipher.final()]);
}
