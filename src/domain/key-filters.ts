import { invalidParameter } from './errors.js';
import { KEY_STATES, KEY_USAGES, type KeyState, type KeyUsage, type ProtectionLevel } from './key.js';

/**
 * ListKeys `Filters` (alibaba-api.md §3.1): a JSON array such as
 * `[{"Key":"KeyState","Values":["Enabled","Disabled"]}]`. Values of one filter are OR-ed,
 * different filters AND-ed.
 */
export interface KeyListFilter {
  states?: KeyState[];
  specs?: string[];
  usages?: KeyUsage[];
  protectionLevels?: ProtectionLevel[];
  instanceIds?: string[];
  /** `User` or `Service`; every key here is user-created (there are no service keys). */
  creatorTypes?: Array<'User' | 'Service'>;
}

/**
 * Spec values Alibaba documents for this filter (§5.2), plus the AES sizes we offer. A spec
 * we cannot create is still a valid filter: it simply matches nothing.
 */
const FILTERABLE_SPECS = [
  'Aliyun_AES_256',
  'Aliyun_AES_192',
  'Aliyun_AES_128',
  'Aliyun_SM4',
  'RSA_2048',
  'RSA_3072',
  'EC_P256',
  'EC_P256K',
  'EC_SM2',
  // Ours (MAC keys, issue 15; domain/key-spec.ts).
  'HMAC_SHA224',
  'HMAC_SHA256',
  'HMAC_SHA384',
  'HMAC_SHA512',
] as const;

const MAX_FILTERS = 10;
const MAX_VALUES = 10;

type FilterKey = 'KeyState' | 'KeySpec' | 'KeyUsage' | 'ProtectionLevel' | 'DKMSInstanceId' | 'CreatorType';

/** Allowed values per filter key; `null` = any non-empty string up to 64 characters. */
const VALUES: Readonly<Record<FilterKey, readonly string[] | null>> = {
  KeyState: KEY_STATES,
  KeySpec: FILTERABLE_SPECS,
  KeyUsage: KEY_USAGES,
  ProtectionLevel: ['SOFTWARE', 'HSM'],
  DKMSInstanceId: null,
  CreatorType: ['User', 'Service'],
};

const isFilterKey = (k: unknown): k is FilterKey => typeof k === 'string' && Object.hasOwn(VALUES, k);
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Parses and validates `Filters`. An empty string means no filter.
 * @throws InvalidParameter(Filters) naming the broken rule: not a JSON array, more than 10
 *   filters, an unknown or repeated `Key`, `Values` not 1–10 strings, or a value outside
 *   the key's enum (case-sensitive, as Alibaba's enums are).
 */
export function parseKeyFilters(json: string): KeyListFilter {
  if (json.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw invalidParameter('Filters', 'It must be a JSON array such as [{"Key":"KeyState","Values":["Enabled"]}].');
  }
  if (!Array.isArray(parsed)) {
    throw invalidParameter('Filters', 'It must be a JSON array such as [{"Key":"KeyState","Values":["Enabled"]}].');
  }
  if (parsed.length > MAX_FILTERS) throw invalidParameter('Filters', `At most ${MAX_FILTERS} filters are allowed.`);

  const filter: KeyListFilter = {};
  const seen = new Set<FilterKey>();
  for (const item of parsed) {
    if (!isRecord(item)) throw invalidParameter('Filters', 'Each filter must be an object with Key and Values.');
    const { Key: key, Values: values } = item;
    if (!isFilterKey(key)) {
      throw invalidParameter('Filters', `Key must be one of ${Object.keys(VALUES).join(', ')}.`);
    }
    if (seen.has(key)) throw invalidParameter('Filters', `The filter ${key} is repeated.`);
    seen.add(key);
    if (!Array.isArray(values) || values.length < 1 || values.length > MAX_VALUES || !values.every((v) => typeof v === 'string')) {
      throw invalidParameter('Filters', `Values of ${key} must be an array of 1 to ${MAX_VALUES} strings.`);
    }
    const allowed = VALUES[key];
    for (const value of values as string[]) {
      if (allowed ? !allowed.includes(value) : value.length < 1 || value.length > 64) {
        throw invalidParameter('Filters', `"${value.slice(0, 64)}" is not a valid ${key}.${allowed ? ` Valid values: ${allowed.join(', ')}.` : ''}`);
      }
    }
    const unique = [...new Set(values as string[])];
    switch (key) {
      case 'KeyState':
        filter.states = unique as KeyState[];
        break;
      case 'KeySpec':
        filter.specs = unique;
        break;
      case 'KeyUsage':
        filter.usages = unique as KeyUsage[];
        break;
      case 'ProtectionLevel':
        filter.protectionLevels = unique as ProtectionLevel[];
        break;
      case 'DKMSInstanceId':
        filter.instanceIds = unique;
        break;
      case 'CreatorType':
        filter.creatorTypes = unique as Array<'User' | 'Service'>;
        break;
    }
  }
  return filter;
}
