import { randomBytes, randomUUID } from 'node:crypto';
import { invalidParameter } from './errors.js';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const SUFFIX_LENGTH = 21;
/** Region-ish infix after the resource prefix, as in Alibaba's `key-hzz630494463ejqjx****`. */
const ID_INFIX = 'hzz';

/** `length` lowercase alphanumerics, uniformly distributed (rejection sampling over bytes). */
function randomAlnum(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      // 252 = 7 × 36: bytes at or above it would bias the modulo.
      if (byte < 252 && out.length < length) out += ALPHABET[byte % 36];
    }
  }
  return out;
}

/** A new key id: `key-hzz` + 21 lowercase alphanumerics (28 chars). */
export const newKeyId = (): string => `key-${ID_INFIX}${randomAlnum(SUFFIX_LENGTH)}`;

/**
 * A key id a caller may choose (seed files, for tests that hard-code ids): `key-` and 4 to 60
 * lowercase letters or digits, the shape of the ids this service makes (`newKeyId`).
 */
export const isKeyIdFormat = (text: string): boolean => /^key-[a-z0-9]{4,60}$/.test(text);

/** An access key id a caller may choose: `LTAI` and 12 to 40 letters or digits (the shape of generated ones). */
export const isAccessKeyIdFormat = (text: string): boolean => /^LTAI[A-Za-z0-9]{12,40}$/.test(text);

/** A new KMS instance id: `kst-hzz` + 21 lowercase alphanumerics (28 chars). */
export const newInstanceId = (): string => `kst-${ID_INFIX}${randomAlnum(SUFFIX_LENGTH)}`;

/** A new key version id: a lowercase UUID, which is exactly the 36 ASCII bytes a ciphertext blob starts with. */
export const newVersionId = (): string => randomUUID();

/** Version ids are UUIDs (either case names the same version); anything else names no version. */
export const isVersionId = (text: string): boolean => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text);

/** `acs:kms:${region}:${account}:key/${keyId}` (alibaba-api.md §5.2). */
export const keyArn = (region: string, account: string, keyId: string): string =>
  `acs:kms:${region}:${account}:key/${keyId}`;

/**
 * `acs:kms:${region}:${account}:alias/${name}`. `aliasName` is the full alias name
 * (`alias/my-key`); a bare name gets the `alias/` prefix.
 */
export const aliasArn = (region: string, account: string, aliasName: string): string =>
  `acs:kms:${region}:${account}:${aliasName.startsWith('alias/') ? aliasName : `alias/${aliasName}`}`;

/** Region and account named by an ARN-form reference. */
export interface ArnScope {
  region: string;
  account: string;
}

/**
 * What a `KeyId` parameter refers to. `arn` is present when the caller used an ARN, so the
 * service can check the region and account (cross-account access needs the ARN).
 */
export type KeyReference =
  | { kind: 'id'; keyId: string; arn?: ArnScope }
  | { kind: 'alias'; aliasName: string; arn?: ArnScope };

const ARN = /^acs:kms:([^:/]+):([^:/]+):(key|alias)\/(.+)$/;
const MAX_REFERENCE_LENGTH = 2048;

/**
 * Parses a `KeyId` parameter: a key id (`key-…` or a legacy UUID), an alias (`alias/x`),
 * a key ARN (`acs:kms:REGION:ACCOUNT:key/ID`) or an alias ARN (`acs:kms:REGION:ACCOUNT:alias/x`).
 * Existence is not checked here.
 * @throws InvalidParameter(KeyId) for an empty value, a malformed `acs:` ARN, or an
 *   implausibly long value.
 */
export function parseKeyReference(s: string): KeyReference {
  if (s.length === 0 || s.length > MAX_REFERENCE_LENGTH) throw invalidParameter('KeyId');
  if (s.startsWith('acs:')) {
    const m = ARN.exec(s);
    const [, region, account, type, rest] = m ?? [];
    if (!region || !account || !type || !rest || (type === 'key' && rest.includes('/'))) {
      throw invalidParameter('KeyId', 'The ARN is malformed.');
    }
    const arn = { region, account };
    return type === 'key' ? { kind: 'id', keyId: rest, arn } : { kind: 'alias', aliasName: `alias/${rest}`, arn };
  }
  if (s.startsWith('alias/')) return { kind: 'alias', aliasName: s };
  return { kind: 'id', keyId: s };
}
