/** Public halves read from the token, as DER SubjectPublicKeyInfo (what GetPublicKey and BYOK hand out). */
import { createPublicKey } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { internalFailure } from '../../domain/errors.js';
import { CURVE_ORDER_BYTES, type EcCurve } from '../../domain/key-spec.js';

type Handle = pkcs11js.Handle;

/** RSA: modulus and exponent read from the token. */
export function rsaPublicKeyDer(p11: pkcs11js.PKCS11, session: Handle, publicKey: Handle): Buffer {
  const [modulus, exponent] = p11.C_GetAttributeValue(session, publicKey, [
    { type: pkcs11js.CKA_MODULUS },
    { type: pkcs11js.CKA_PUBLIC_EXPONENT },
  ]);
  return createPublicKey({
    key: { kty: 'RSA', n: component(modulus?.value).toString('base64url'), e: component(exponent?.value).toString('base64url') },
    format: 'jwk',
  }).export({ type: 'spki', format: 'der' });
}

/** JWK curve names node:crypto takes (SM2 has none: its SPKI is not built here). */
const JWK_CURVE: Partial<Record<EcCurve, string>> = { 'P-256': 'P-256', secp256k1: 'secp256k1' };

/**
 * EC: CKA_EC_POINT is, per PKCS#11 v2.40, the DER OCTET STRING of the uncompressed point
 * (04 ‖ x ‖ y); some modules return the bare point. Both are accepted.
 */
export function ecPublicKeyDer(p11: pkcs11js.PKCS11, session: Handle, publicKey: Handle, curve: EcCurve): Buffer {
  const [attribute] = p11.C_GetAttributeValue(session, publicKey, [{ type: pkcs11js.CKA_EC_POINT }]);
  const value = component(attribute?.value);
  const crv = JWK_CURVE[curve];
  if (crv === undefined) throw internalFailure(`No public key encoding for curve ${curve}.`);
  const pointBytes = 2 * CURVE_ORDER_BYTES[curve] + 1;
  const point = value.length === pointBytes ? value : value.subarray(value.length - pointBytes);
  if (point[0] !== 0x04 || value.length - pointBytes > 3) throw internalFailure('The token returned a compressed or malformed EC point.');
  const half = (point.length - 1) / 2;
  return createPublicKey({
    key: { kty: 'EC', crv, x: point.subarray(1, 1 + half).toString('base64url'), y: point.subarray(1 + half).toString('base64url') },
    format: 'jwk',
  }).export({ type: 'spki', format: 'der' });
}

function component(value: unknown): Buffer {
  if (!Buffer.isBuffer(value)) throw internalFailure('The token returned no public key component.');
  return value;
}
