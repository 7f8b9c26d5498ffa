import { createHash } from 'node:crypto';
import { internalFailure, invalidCiphertext, invalidParameter } from './errors.js';

/** Byte lengths of the blob's fixed parts (alibaba-api.md §5.9). */
export const VERSION_ID_LENGTH = 36;
export const IV_LENGTH = 12;
export const TAG_LENGTH = 16;
/** Longest EncryptionContext JSON accepted (alibaba-api.md §5.8). */
export const MAX_ENCRYPTION_CONTEXT_LENGTH = 8192;

/** The parts of an Alibaba-compatible ciphertext blob: one AES-GCM output under one key version. */
export interface CiphertextBlob {
  /** Lowercase UUID, 36 ASCII characters (version ids are issued lowercase). */
  keyVersionId: string;
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

/**
 * Lowercase only: the version id is not covered by the GCM tag, and the store matches uuids
 * case-insensitively, so an upper-cased prefix would be a second valid form of one ciphertext.
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Standard alphabet, padded or not; canonical form is checked after decoding. */
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * `base64(KeyVersionId as 36 ASCII bytes ‖ 12-byte IV ‖ ciphertext ‖ 16-byte tag)`, the
 * layout of Alibaba's dkms-transfer SDK, so blobs stay readable by either side.
 * @throws InternalFailure when a part has the wrong length (a bug, not a client error).
 */
export function encodeCiphertextBlob({ keyVersionId, iv, ciphertext, tag }: CiphertextBlob): string {
  if (!UUID.test(keyVersionId) || iv.length !== IV_LENGTH || tag.length !== TAG_LENGTH) {
    throw internalFailure('ciphertext blob parts have the wrong shape');
  }
  return Buffer.concat([Buffer.from(keyVersionId, 'ascii'), iv, ciphertext, tag]).toString('base64');
}

/**
 * Splits a `CiphertextBlob` parameter. Only the shape is checked here; the GCM tag and
 * the version's existence are checked by whoever decrypts.
 * @throws InvalidCiphertext for non-canonical base64, fewer than 64 bytes, or a version id
 *   that is not a lowercase UUID.
 */
export function decodeCiphertextBlob(b64: string): CiphertextBlob {
  if (!BASE64.test(b64)) throw invalidCiphertext();
  const raw = Buffer.from(b64, 'base64');
  // Buffer.from ignores stray bits and bad padding; re-encoding catches both.
  if (raw.toString('base64').replace(/=+$/, '') !== b64.replace(/=+$/, '')) throw invalidCiphertext();
  if (b64.includes('=') && b64.length % 4 !== 0) throw invalidCiphertext();
  if (raw.length < VERSION_ID_LENGTH + IV_LENGTH + TAG_LENGTH) throw invalidCiphertext();
  const keyVersionId = raw.subarray(0, VERSION_ID_LENGTH).toString('latin1');
  if (!UUID.test(keyVersionId)) throw invalidCiphertext();
  const body = VERSION_ID_LENGTH + IV_LENGTH;
  return {
    keyVersionId,
    iv: raw.subarray(VERSION_ID_LENGTH, body),
    ciphertext: raw.subarray(body, raw.length - TAG_LENGTH),
    tag: raw.subarray(raw.length - TAG_LENGTH),
  };
}

/**
 * Parses the `EncryptionContext` parameter: a JSON object of string → string, at most
 * 8192 characters of JSON. Absent or empty means no context (`{}`).
 * @param parameter the name the client gave it (ReEncrypt's Source/DestinationEncryptionContext)
 * @throws InvalidParameter naming `parameter`
 */
export function parseEncryptionContext(json: string | undefined, parameter = 'EncryptionContext'): Record<string, string> {
  if (json === undefined || json === '') return {};
  if (json.length > MAX_ENCRYPTION_CONTEXT_LENGTH) {
    throw invalidParameter(parameter, `It must be at most ${MAX_ENCRYPTION_CONTEXT_LENGTH} characters.`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw invalidParameter(parameter, 'It must be a JSON object.');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw invalidParameter(parameter, 'It must be a JSON object.');
  }
  const entries = Object.entries(parsed);
  if (!entries.every(([, v]) => typeof v === 'string')) {
    throw invalidParameter(parameter, 'Every value must be a string.');
  }
  // fromEntries defines own properties, so a "__proto__" key stays an ordinary key.
  return Object.fromEntries(entries) as Record<string, string>;
}

/**
 * The AES-GCM AAD bound to an EncryptionContext: SHA-256 of `k1=v1&k2=v2` (UTF-8) with keys
 * sorted by UTF-16 code units — dkms-transfer's rule, so member order never matters
 * (alibaba-api.md §5.8–5.9). `undefined` for an empty context: no AAD at all.
 */
export function encryptionContextAad(ctx: Readonly<Record<string, string>>): Buffer | undefined {
  const keys = Object.keys(ctx).sort();
  if (keys.length === 0) return undefined;
  const canonical = keys.map((k) => `${k}=${ctx[k] ?? ''}`).join('&');
  return createHash('sha256').update(canonical, 'utf8').digest();
}
