/**
 * Input and output of the CLI's signing and MAC verbs (`kms sign | verify | public-key | mac`),
 * so a shell user can sign with KMS and check with `openssl dgst -verify` without writing
 * code. Signatures and MACs travel as raw bytes (what openssl's `-signature` takes) or, with
 * `--base64`, as base64 text; messages are always raw bytes.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isCanonicalBase64 } from '../domain/asymmetric.js';
import { readPayload } from './payload-io.js';

type Call = (action: string, params: Record<string, string | number | boolean | undefined>) => Promise<Record<string, unknown>>;

/** Bytes from a file: raw, or with `asBase64` its base64 text decoded. */
export async function readBytesFile(file: string, asBase64: boolean, what: string): Promise<Buffer> {
  const raw = await readFile(file);
  if (!asBase64) return raw;
  const text = raw.toString('utf8').trim();
  if (text === '' || !isCanonicalBase64(text)) throw new Error(`--base64: the ${what} file is not base64 text`);
  return Buffer.from(text, 'base64');
}

/** What a signature or MAC verb writes: the bytes, or with `asBase64` base64 text and a newline. */
export const bytesOutput = (bytes: Buffer, asBase64: boolean): Buffer =>
  asBase64 ? Buffer.from(`${bytes.toString('base64')}\n`, 'utf8') : bytes;

/**
 * The SHA-256 digest AsymmetricSign/Verify take (every Alibaba signing algorithm digests with
 * SHA-256): from `--digest-file` (32 bytes, raw or base64), else computed here over FILE or stdin.
 */
export async function digestOf(file: string | undefined, digestFile: string | undefined, asBase64: boolean): Promise<Buffer> {
  if (digestFile !== undefined) {
    if (file !== undefined) throw new Error('give either a message (FILE or stdin) or --digest-file, not both');
    const digest = await readBytesFile(digestFile, asBase64, 'digest');
    if (digest.length !== 32) throw new Error(`--digest-file must hold a 32-byte SHA-256 digest (it holds ${digest.length} bytes)`);
    return digest;
  }
  return createHash('sha256').update(await readPayload(file, 'message')).digest();
}

/**
 * `--algorithm`, or the one the key's spec implies: RSA keys sign with RSA_PKCS1_SHA_256 (what
 * `openssl dgst -verify` checks without -sigopt), EC keys with ECDSA_SHA_256, an HMAC_SHAnnn key
 * computes HMAC_SHA_nnn.
 */
export async function algorithmFor(call: Call, keyId: string, given: string | undefined, kind: 'sign' | 'mac'): Promise<string> {
  if (given !== undefined) return given;
  const described = await call('DescribeKey', { KeyId: keyId });
  const spec = String((described.KeyMetadata as Record<string, unknown> | undefined)?.KeySpec ?? '');
  if (kind === 'mac') {
    const hmac = /^HMAC_SHA(\d{3})$/.exec(spec);
    if (hmac) return `HMAC_SHA_${hmac[1]}`;
  } else if (spec.startsWith('RSA_')) {
    return 'RSA_PKCS1_SHA_256';
  } else if (spec === 'EC_P256' || spec === 'EC_P256K') {
    return 'ECDSA_SHA_256';
  }
  throw new Error(`cannot choose an algorithm for a ${spec || 'key of unknown spec'} key: pass --algorithm`);
}

/** openssl's words for a verification: a line on stdout, and exit 1 when it fails. */
export function verificationOutput(valid: boolean): Buffer {
  if (!valid) process.exitCode = 1;
  return Buffer.from(valid ? 'Verified OK\n' : 'Verification failure\n', 'utf8');
}
