/**
 * Formats a date the way Alibaba's responses do: ISO-8601 UTC without milliseconds,
 * `2024-05-20T06:34:21Z` (alibaba-api.md §3.1). Milliseconds are truncated, not rounded.
 * Throws RangeError for an invalid Date.
 */
export function isoSeconds(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
