import { z } from 'zod';

/**
 * The SDKs flatten arrays as `Name.1`, `Name.2`, … and arrays of objects as `Name.1.Key`,
 * `Name.1.Value` (alibaba-api.md §4.2, OpenApiUtil.query). Action schemas see one flat record
 * of strings; these helpers gather such parameters back into arrays, in index order, under
 * the name `Name.N`, before the schema validates them (so errors name `ResourceId.N`).
 */

/** Indexes start at 1; far larger ones are not something an SDK sends. */
const INDEX = '([1-9]\\d{0,3})';

const escape = (name: string) => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** `Name.N`; group 1 is N. */
export const listPattern = (name: string): RegExp => new RegExp(`^${escape(name)}\\.${INDEX}$`);

/** `Name.N.Field` for one of `fields`; group 1 is N, group 2 the field. */
export const recordPattern = (name: string, fields: readonly string[]): RegExp =>
  new RegExp(`^${escape(name)}\\.${INDEX}\\.(${fields.map(escape).join('|')})$`);

/** `Name.N` values in N order, or undefined when there are none. */
export function gatherList(raw: Readonly<Record<string, string>>, name: string): string[] | undefined {
  const pattern = listPattern(name);
  const found: Array<[number, string]> = [];
  for (const [param, value] of Object.entries(raw)) {
    const m = pattern.exec(param);
    if (m?.[1]) found.push([Number(m[1]), value]);
  }
  if (found.length === 0) return undefined;
  return found.sort((a, b) => a[0] - b[0]).map(([, value]) => value);
}

/** `Name.N.Field` groups in N order (a field the caller left out is absent), or undefined when there are none. */
export function gatherRecords<F extends string>(
  raw: Readonly<Record<string, string>>,
  name: string,
  fields: readonly F[],
): Array<Partial<Record<F, string>>> | undefined {
  const pattern = recordPattern(name, fields);
  const byIndex = new Map<number, Partial<Record<F, string>>>();
  for (const [param, value] of Object.entries(raw)) {
    const m = pattern.exec(param);
    if (!m?.[1] || !m[2]) continue;
    const index = Number(m[1]);
    const record: Partial<Record<F, string>> = byIndex.get(index) ?? {};
    record[m[2] as F] = value;
    byIndex.set(index, record);
  }
  if (byIndex.size === 0) return undefined;
  return [...byIndex.entries()].sort((a, b) => a[0] - b[0]).map(([, record]) => record);
}

export interface IndexedSpec {
  /** Plain lists: `ResourceId` gathers `ResourceId.N` into `'ResourceId.N'`. */
  lists?: readonly string[];
  /** Lists of objects: `{Tag: ['Key', 'Value']}` gathers `Tag.N.Key`/`Tag.N.Value` into `'Tag.N'`. */
  records?: Readonly<Record<string, readonly string[]>>;
}

const specs = new WeakMap<z.ZodTypeAny, IndexedSpec>();

/** The indexed parameters a schema built by {@link withIndexed} gathers (for the edge's name check). */
export function indexedSpecOf(schema: z.ZodTypeAny): IndexedSpec | undefined {
  return specs.get(schema);
}

/** Wraps an action's schema so indexed parameters arrive gathered (see the module comment). */
export function withIndexed<T extends z.ZodTypeAny>(spec: IndexedSpec, schema: T) {
  const wrapped = z.preprocess((input) => {
    const raw = input as Record<string, string>;
    const out: Record<string, unknown> = { ...raw };
    for (const name of spec.lists ?? []) {
      const list = gatherList(raw, name);
      if (list) out[`${name}.N`] = list;
    }
    for (const [name, fields] of Object.entries(spec.records ?? {})) {
      const records = gatherRecords(raw, name, fields);
      if (records) out[`${name}.N`] = records;
    }
    return out;
  }, schema);
  specs.set(wrapped, spec);
  return wrapped;
}
