import { constants, createPublicKey, publicEncrypt } from 'node:crypto';
import type { WrappingAlgorithm } from './byok.js';

/**
 * BYOK step 3, done on the client (the CLI, a seed file's EXTERNAL keys, tests): encrypts key
 * material with the downloaded wrapping public key, exactly as `openssl pkeyutl -encrypt … -pkeyopt rsa_padding_mode:oaep -pkeyopt
 * rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256` does for RSAES_OAEP_SHA_256 (node:crypto
 * uses the OAEP hash for MGF1 too). `publicKey` is PEM or DER SubjectPublicKeyInfo, as the
 * seed offers both downloads. Nothing leaves this machine.
 * @throws Error when the key is not an RSA public key.
 */
export function wrapKeyMaterial(publicKey: Buffer, algorithm: WrappingAlgorithm, material: Buffer): Buffer {
  const isPem = publicKey.subarray(0, 64).toString('latin1').includes('-----BEGIN');
  const key = isPem ? createPublicKey({ key: publicKey, format: 'pem' }) : createPublicKey({ key: publicKey, format: 'der', type: 'spki' });
  if (key.asymmetricKeyType !== 'rsa') throw new Error('The wrapping public key must be an RSA key.');
  switch (algorithm) {
    case 'RSAES_OAEP_SHA_256':
      return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, material);
    case 'RSAES_OAEP_SHA_1':
      return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, material);
    case 'RSAES_PKCS1_V1_5':
      return publicEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, material);
  }
}

/** DER SubjectPublicKeyInfo → PEM (`-----BEGIN PUBLIC KEY-----`), as the console's PEM download. */
export function publicKeyPem(der: Buffer): string {
  return createPublicKey({ key: der, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }).toString();
}
