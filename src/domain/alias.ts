import { invalidParameter } from './errors.js';

/** Every alias name starts with this prefix (alibaba-api.md §5.6). */
export const ALIAS_PREFIX = 'alias/';
/**
 * Reserved for Alibaba's service aliases (alibaba-api.md §5.6); users may not create names
 * under it in any case: names are case-insensitive here (`alias/ACS-x` is `alias/acs-x`).
 */
export const RESERVED_ALIAS_PREFIX = 'alias/acs';
export const MAX_ALIAS_NAME_LENGTH = 255;

const ALIAS_BODY = /^[a-zA-Z0-9_/-]+$/;

/**
 * Validates an `AliasName` for CreateAlias/UpdateAlias: `alias/` followed by at least one
 * of `[a-zA-Z0-9_/-]`, 255 characters at most in total, not under the reserved `alias/acs`
 * in any case.
 * @throws InvalidParameter(AliasName) naming the broken rule.
 */
export function validateAliasName(name: string): void {
  if (!name.startsWith(ALIAS_PREFIX)) {
    throw invalidParameter('AliasName', `It must start with "${ALIAS_PREFIX}".`);
  }
  if (name.length > MAX_ALIAS_NAME_LENGTH) {
    throw invalidParameter('AliasName', `It must be at most ${MAX_ALIAS_NAME_LENGTH} characters long.`);
  }
  if (!ALIAS_BODY.test(name.slice(ALIAS_PREFIX.length))) {
    throw invalidParameter(
      'AliasName',
      'After "alias/" it must have at least one character, and only letters, digits, "_", "-" and "/".',
    );
  }
  if (name.toLowerCase().startsWith(RESERVED_ALIAS_PREFIX)) {
    throw invalidParameter('AliasName', `The prefix "${RESERVED_ALIAS_PREFIX}" is reserved.`);
  }
}

const ALIAS_ARN = /^acs:kms:[^:/]+:[^:/]+:alias\//;

/**
 * Whether a `KeyId` parameter names an alias (`alias/x` or an alias ARN) rather than a key.
 * Never throws; use `parseKeyReference` (ids.ts) to resolve the reference.
 */
export function isAliasReference(keyIdParam: string): boolean {
  return keyIdParam.startsWith(ALIAS_PREFIX) || ALIAS_ARN.test(keyIdParam);
}
