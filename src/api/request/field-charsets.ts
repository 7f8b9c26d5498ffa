/**
 * Which characters a parameter's value may hold, by the parameter's base name (`Tag.3.Value`
 * → `Tag`). The one table the request edge consults before any store or HSM call.
 *
 * - `any`: arbitrary text the service never stores or interprets; it must come back
 *   verbatim. `Plaintext` (alibaba-api.md §5.9: an opaque string Decrypt returns as given).
 * - `text`: human text and JSON documents, where tab, line feed and carriage return are
 *   ordinary whitespace; other controls (NUL first: Postgres cannot store it) are refused.
 * - `token`: everything else — ids, aliases, enums, numbers, tags, signature parts — refuses
 *   every C0 control and DEL.
 */
export type FieldCharset = 'any' | 'text' | 'token';

const CHARSET_BY_NAME: Readonly<Record<string, FieldCharset>> = {
  Plaintext: 'any',
  Description: 'text',
  DeletionProtectionDescription: 'text',
  EncryptionContext: 'text',
  SourceEncryptionContext: 'text',
  DestinationEncryptionContext: 'text',
  Policy: 'text',
  Tags: 'text',
  TagKeys: 'text',
  Filters: 'text',
};

/** The charset of a parameter, from its base name. */
export function fieldCharsetOf(name: string): FieldCharset {
  const dot = name.indexOf('.');
  const base = dot < 0 ? name : name.slice(0, dot);
  return Object.hasOwn(CHARSET_BY_NAME, base) ? CHARSET_BY_NAME[base]! : 'token';
}
