/**
 * The SOFTWARE tier's key pairs (issue 15): generated with node:crypto, kept as PKCS#8 DER
 * sealed under the HSM root key (like symmetric SOFTWARE material), used from the unsealed
 * copy the SoftwareCipher cache holds. Signing a precomputed digest is not something
 * node:crypto can do (it always hashes), so signatures go through `Hsm.signWithKeyMaterial`.
 */
import { constants, createPrivateKey, createPublicKey, generateKeyPair, privateDecrypt } from 'node:crypto';
import { promisify } from 'node:util';
import { type AsymmetricEncryptionAlgorithm, oaepHash } from '../domain/asymmetric.js';
import { internalFailure, invalidCiphertext } from '../domain/errors.js';
import type { VersionKeySpec } from './hsm.js';

const generate = promisify(generateKeyPair);

/** A new private key as PKCS#8 DER; the caller seals it and zeroes this buffer. */
export async function generateKeyPairPkcs8(spec: VersionKeySpec): Promise<Buffer> {
  if (spec.kind === 'rsa') {
    const { privateKey } = await generate('rsa', { modulusLength: spec.bits, publicExponent: 65537 });
    return privateKey.export({ type: 'pkcs8', format: 'der' });
  }
  if (spec.kind === 'ec' && spec.curve !== 'SM2') {
    const { privateKey } = await generate('ec', { namedCurve: spec.curve === 'P-256' ? 'prime256v1' : 'secp256k1' });
    return privateKey.export({ type: 'pkcs8', format: 'der' });
  }
  throw internalFailure('The SOFTWARE tier has no key pairs of this spec.');
}

/** DER SubjectPublicKeyInfo of a PKCS#8 private key. */
export function publicKeyOfPkcs8(pkcs8: Buffer): Buffer {
  return createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ type: 'spki', format: 'der' });
}

/** RSA-OAEP decryption with node:crypto (both hashes natively). Every failure is one InvalidCiphertext. */
export function decryptWithPkcs8(pkcs8: Buffer, algorithm: AsymmetricEncryptionAlgorithm, ciphertext: Buffer): Buffer {
  try {
    const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    // RFC 8017 §7.1.2: a ciphertext that is not exactly k octets is a decryption error (OpenSSL
    // left-pads a shorter one, so dropping a leading zero octet would otherwise still decrypt).
    const modulusBits = key.asymmetricKeyDetails?.modulusLength;
    if (modulusBits === undefined || ciphertext.length !== Math.ceil(modulusBits / 8)) throw invalidCiphertext();
    return privateDecrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: oaepHash(algorithm) }, ciphertext);
  } catch {
    throw invalidCiphertext();
  }
}
