/**
 * CLI output: JSON by default (scriptable), a plain table with `--table` — one row per item for
 * a list, one `Field  Value` row per field for a single record. Nested objects flatten to dotted
 * names (`BindVpcs.BindVpc`), lists to comma-separated values.
 */
export function print(value: unknown, options: { table?: boolean } = {}): void {
  if (options.table) {
    process.stdout.write(`${toTable(value)}\n`);
    return;
  }
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** The `--table` rendering of `value` (without the final newline). */
export function toTable(value: unknown): string {
  if (Array.isArray(value)) return grid(value.map((r) => flatten(r)));
  if (typeof value === 'object' && value !== null) {
    return grid(Object.entries(flatten(value)).map(([Field, Value]) => ({ Field, Value })));
  }
  return String(value ?? '');
}

/**
 * Control characters and bidirectional overrides in a cell, escaped (`\n`, `\u202e`): a value
 * someone else chose (a key's description) must not split a row or reorder what an operator
 * reads, so one row never passes for two.
 */
const UNSAFE_IN_A_CELL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED_ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function safeCell(text: string): string {
  return text.replace(UNSAFE_IN_A_CELL, (c) => NAMED_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function grid(rows: Array<Record<string, string>>): string {
  const records = rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [safeCell(k), safeCell(v)])));
  const columns = [...new Set(records.flatMap((r) => Object.keys(r)))];
  if (columns.length === 0) return '(empty)';
  const widths = columns.map((c) => Math.max(c.length, ...records.map((r) => (r[c] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...records.map((r) => line(columns.map((c) => r[c] ?? '')))].join('\n');
}

function flatten(value: unknown, prefix = ''): Record<string, string> {
  if (value === null || typeof value !== 'object') return { [prefix || 'value']: String(value ?? '') };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    const name = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, flatten(v, name));
    else out[name] = Array.isArray(v) ? v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(',') : String(v ?? '');
  }
  return out;
}
