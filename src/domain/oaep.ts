/**
 * EME-OAEP decoding (RFC 8017 §7.1.2) for the documented fallback path: the HSM does the raw
 * RSA (`CKM_RSA_X_509`) when it cannot unwrap OAEP-SHA256 natively (DESIGN.md, capability
 * gap), and the padding is removed here. Every check feeds one `bad` flag and every failure
 * is the same InvalidKeyMaterial error, so neither timing nor message tells which check
 * failed (Manger's attack).
 */
import { createHash } from 'node:crypto';
import { invalidKeyMaterial } from './errors.js';

export type OaepHash = 'sha1' | 'sha256';

const HASH_LENGTH: Readonly<Record<OaepHash, number>> = { sha1: 20, sha256: 32 };

/** MGF1 (RFC 8017 B.2.1) with the same hash as the label. */
function mgf1(seed: Buffer, length: number, hash: OaepHash): Buffer {
  const blocks: Buffer[] = [];
  const counter = Buffer.alloc(4);
  for (let c = 0, produced = 0; produced < length; c++) {
    counter.writeUInt32BE(c);
    const block = createHash(hash).update(seed).update(counter).digest();
    blocks.push(block);
    produced += block.length;
  }
  return Buffer.concat(blocks).subarray(0, length);
}

/** 1 when byte `a` equals `b`, else 0, without a branch. */
const eqByte = (a: number, b: number): number => (((a ^ b) - 1) >>> 31) & 1;
/** `x` when `c` is 1, `y` when `c` is 0, without a branch. */
const select = (c: number, x: number, y: number): number => (-c & x) | ((c - 1) & y);

/**
 * Decodes `em`, the raw RSA output of k bytes (k = modulus length), into the message M.
 * The returned buffer is a copy; intermediate buffers are zeroed.
 * @throws InvalidKeyMaterial ("key material is invalid.") for any malformation: `em` too
 *   short for the hash, first byte not 0, label hash mismatch, or no 0x01 separator.
 */
export function decodeOaep(em: Buffer, hash: OaepHash, label: Buffer = Buffer.alloc(0)): Buffer {
  const hLen = HASH_LENGTH[hash];
  const k = em.length;
  // k is public (the modulus length), so this early exit leaks nothing secret.
  if (k < 2 * hLen + 2) throw invalidKeyMaterial();

  const lHash = createHash(hash).update(label).digest();
  const maskedSeed = em.subarray(1, 1 + hLen);
  const maskedDb = em.subarray(1 + hLen);
  const seed = mgf1(maskedDb, hLen, hash);
  for (let i = 0; i < hLen; i++) seed[i] = (seed[i] ?? 0) ^ (maskedSeed[i] ?? 0);
  const db = mgf1(seed, k - hLen - 1, hash);
  for (let i = 0; i < db.length; i++) db[i] = (db[i] ?? 0) ^ (maskedDb[i] ?? 0);

  let bad = 1 - eqByte(em[0] ?? 0, 0);
  for (let i = 0; i < hLen; i++) bad |= 1 - eqByte(db[i] ?? 0, lHash[i] ?? 0);

  // Find the first 0x01 after PS (zeros) without stopping early; any other byte first is bad.
  let looking = 1;
  let index = 0;
  for (let i = hLen; i < db.length; i++) {
    const byte = db[i] ?? 0;
    const isOne = eqByte(byte, 1);
    const isZero = eqByte(byte, 0);
    index = select(looking & isOne, i, index);
    bad |= looking & (1 - isOne) & (1 - isZero);
    looking &= 1 - isOne;
  }
  bad |= looking;

  const message = bad === 0 ? Buffer.from(db.subarray(index + 1)) : undefined;
  seed.fill(0);
  db.fill(0);
  if (message === undefined) throw invalidKeyMaterial();
  return message;
}
