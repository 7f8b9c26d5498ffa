/**
 * The SOFTWARE tier's MAC keys (issue 15): the material is random bytes from the HSM's RNG,
 * sealed under the root key like AES material, and used from the unsealed copy the
 * SoftwareCipher cache holds, with node:crypto's HMAC.
 */
import { createHmac } from 'node:crypto';
import { type MacAlgorithm, macHash } from '../domain/mac.js';

/** HMAC of `message` under `material` with the algorithm's hash (full output, no truncation). */
export function hmacWithMaterial(material: Buffer, algorithm: MacAlgorithm, message: Buffer): Buffer {
  return createHmac(macHash(algorithm), material).update(message).digest();
}
