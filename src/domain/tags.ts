import { invalidParameter } from './errors.js';

/** One key tag. */
export interface Tag {
  key: string;
  value: string;
}

/** Seed 000 (console text): at most 20 key-value pairs per key. */
export const MAX_TAGS_PER_KEY = 20;
export const MAX_TAG_KEY_LENGTH = 128;
export const MAX_TAG_VALUE_LENGTH = 128;

/** Letters, digits, space and `/ \ _ - . + = : @` (alibaba-api.md §5.7; seed 000). */
const TAG_CHARS = /^[\p{L}\p{Nd} /\\_\-.+=:@]*$/u;
const RESERVED_KEY_PREFIXES = ['aliyun', 'acs:'];

const charCount = (s: string): number => [...s].length;

/**
 * Validates one tag: key 1–128 characters, value 0–128, both from the allowed character
 * set; the key must not start with `aliyun` or `acs:` (any case).
 * @throws InvalidParameter(`param`, detail) — `Tags` unless told otherwise.
 */
export function validateTag(key: string, value: string, param = 'Tags'): void {
  const keyLength = charCount(key);
  if (keyLength < 1 || keyLength > MAX_TAG_KEY_LENGTH) {
    throw invalidParameter(param, `A TagKey must be 1 to ${MAX_TAG_KEY_LENGTH} characters long.`);
  }
  if (charCount(value) > MAX_TAG_VALUE_LENGTH) {
    throw invalidParameter(param, `A TagValue must be at most ${MAX_TAG_VALUE_LENGTH} characters long.`);
  }
  if (!TAG_CHARS.test(key) || !TAG_CHARS.test(value)) {
    throw invalidParameter(param, 'Tags may contain only letters, digits, spaces and / \\ _ - . + = : @.');
  }
  const lower = key.toLowerCase();
  if (RESERVED_KEY_PREFIXES.some((p) => lower.startsWith(p))) {
    throw invalidParameter(param, 'A TagKey must not start with "aliyun" or "acs:".');
  }
}

function parseJsonArray(json: string, param: string): unknown[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw invalidParameter(param, 'It must be a JSON array.');
  }
  if (!Array.isArray(parsed)) throw invalidParameter(param, 'It must be a JSON array.');
  return parsed;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Parses the `Tags` parameter of CreateKey/TagResource: `[{"TagKey":"k","TagValue":"v"}]`,
 * at most 20 tags, unique keys, each valid per `validateTag`. A missing TagValue is `""`.
 * @throws InvalidParameter(Tags)
 */
export function parseTags(json: string): Tag[] {
  const items = parseJsonArray(json, 'Tags');
  if (items.length > MAX_TAGS_PER_KEY) {
    throw invalidParameter('Tags', `At most ${MAX_TAGS_PER_KEY} tags are allowed.`);
  }
  const seen = new Set<string>();
  return items.map((item) => {
    if (!isRecord(item)) throw invalidParameter('Tags', 'Each tag must be an object with TagKey and TagValue.');
    const { TagKey: key, TagValue: value = '' } = item;
    if (typeof key !== 'string' || typeof value !== 'string') {
      throw invalidParameter('Tags', 'TagKey and TagValue must be strings.');
    }
    validateTag(key, value);
    if (seen.has(key)) throw invalidParameter('Tags', `The TagKey "${key}" is repeated.`);
    seen.add(key);
    return { key, value };
  });
}

/**
 * Parses the `TagKeys` parameter of UntagResource: a JSON array of 1–20 strings, each
 * 1–128 bytes. Duplicates are collapsed; keys the resource lacks are the caller's no-op.
 * @throws InvalidParameter(TagKeys)
 */
export function parseTagKeys(json: string): string[] {
  const items = parseJsonArray(json, 'TagKeys');
  if (items.length < 1 || items.length > MAX_TAGS_PER_KEY) {
    throw invalidParameter('TagKeys', `It must hold 1 to ${MAX_TAGS_PER_KEY} tag keys.`);
  }
  const keys = new Set<string>();
  for (const item of items) {
    if (typeof item !== 'string') throw invalidParameter('TagKeys', 'Each tag key must be a string.');
    const bytes = Buffer.byteLength(item, 'utf8');
    if (bytes < 1 || bytes > MAX_TAG_KEY_LENGTH) {
      throw invalidParameter('TagKeys', `Each tag key must be 1 to ${MAX_TAG_KEY_LENGTH} bytes long.`);
    }
    keys.add(item);
  }
  return [...keys];
}
