/**
 * The request edge: the one place that turns an HTTP request's query string, form body and
 * ACS3 JSON body into parameters. Everything after it (signature check, dispatch, the
 * action's zod schema) sees one flat record of strings in which
 *
 * - every name is well formed (`Name`, `Name.N`, `Name.N.Field`: no `=`, `&`, controls…) and
 *   appears once across query, form and JSON body;
 * - the count, the size of each value and the nesting of the JSON body are bounded, so no
 *   input can exhaust the stack or the heap (a 150,000-parameter form body and a 5,000-deep
 *   JSON body were both 500s once);
 * - no value holds a character that cannot travel verbatim: lone UTF-16 surrogates never,
 *   C0 controls and DEL only where a field carries free text ({@link FIELD_CHARSETS}).
 *
 * It runs before authentication — unauthenticated input is hostile input too — and throws
 * only client errors (`InvalidParameter`, `ParseRequestParameterException`).
 */
import { KmsError, invalidParameter } from '../../domain/errors.js';
import { type FieldCharset, fieldCharsetOf } from './field-charsets.js';

/** Bounds of what one request may carry. */
export interface EdgeLimits {
  /** Parameters across query, form and JSON body. */
  readonly maxParams: number;
  /** Characters in one value (field schemas set tighter, per-field limits). */
  readonly maxValueLength: number;
  /** Nesting of the ACS3 JSON body: `{}` at the top is depth 1. */
  readonly maxJsonDepth: number;
}

/**
 * TagResources at its largest (50 ResourceId.N + 20 Tag.N.Key/Value) is ~100 parameters;
 * 512 leaves room and keeps the work per request small. A 6 KiB plaintext with an 8 KiB
 * context is the largest real value (alibaba-api.md §4.2); 256 Ki characters is far above.
 */
export const DEFAULT_EDGE_LIMITS: EdgeLimits = { maxParams: 512, maxValueLength: 262_144, maxJsonDepth: 8 };

/** The parts of an HTTP request the edge reads, exactly as received. */
export interface RawRequest {
  /** Everything after the first `?` of the request target, undecoded. */
  readonly rawQuery: string;
  /** Header map with lowercase names (`IncomingMessage.headers`). */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The body bytes as received. */
  readonly rawBody: Buffer;
}

/** What kind of body carried parameters. */
export type BodyKind = 'none' | 'form' | 'json';

/** Parameters in null-prototype records (names are client-controlled). */
export interface CollectedParams {
  /** Decoded query parameters: what v1 and ACS3 sign as the query. */
  readonly query: Readonly<Record<string, string>>;
  /** Decoded form-body parameters (v1 signs them with the query; ACS3 through the body hash). */
  readonly form: Readonly<Record<string, string>>;
  /** Every parameter: query, form and JSON body together, each name once. */
  readonly all: Readonly<Record<string, string>>;
  readonly bodyKind: BodyKind;
}

/**
 * `Name`, `Name.N` or `Name.N.Field` (alibaba-api.md §4.2 flattening). A name with `=` or `&`
 * would let a signed ACS3 query be re-read as other parameters (its canonical form does not
 * encode names), so only this grammar passes.
 */
const NAME_RE = /^[A-Za-z][A-Za-z0-9]{0,63}(?:\.[1-9][0-9]{0,3}(?:\.[A-Za-z][A-Za-z0-9]{0,63})?)?$/;

const FORM_MEDIA_TYPE = 'application/x-www-form-urlencoded';
const JSON_MEDIA_TYPE = 'application/json';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Client-supplied names are echoed in messages: keep them short and printable. */
export function shownName(name: string): string {
  const printable = name.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > 64 ? `${printable.slice(0, 64)}…` : printable;
}

const malformedBody = (why: string) => new KmsError('ParseRequestParameterException', `Server parse parameters exception. ${why}`);
const tooManyParams = (max: number) => invalidParameter('Parameters', `A request carries at most ${max} parameters.`);

/**
 * Collects and checks every parameter of a request (see the module comment).
 * @throws KmsError `InvalidParameter` or `ParseRequestParameterException` (400)
 */
export function collectParams(req: RawRequest, limits: EdgeLimits = DEFAULT_EDGE_LIMITS): CollectedParams {
  const all = Object.create(null) as Record<string, string>;
  const query = Object.create(null) as Record<string, string>;
  const form = Object.create(null) as Record<string, string>;
  let count = addPairs(all, query, decodeForm(req.rawQuery, limits.maxParams), 0, limits);
  const bodyKind = classifyBody(req);
  if (bodyKind === 'form') {
    count = addPairs(all, form, decodeForm(decodeUtf8(req.rawBody), limits.maxParams), count, limits);
  } else if (bodyKind === 'json') {
    addPairs(all, all, decodeJsonBody(decodeUtf8(req.rawBody), limits), count, limits);
  }
  return { query, form, all, bodyKind };
}

/**
 * Checks and stores decoded pairs (`[name, value, name, value, …]`: no array per pair) in
 * `target` and in `all`; returns the parameter count so far. A module function rather than a
 * closure per request: this runs on every call.
 */
function addPairs(all: Record<string, string>, target: Record<string, string>, pairs: readonly string[], counted: number, limits: EdgeLimits): number {
  let count = counted;
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i]!;
    const value = pairs[i + 1]!;
    count += 1;
    if (count > limits.maxParams) throw tooManyParams(limits.maxParams);
    checkName(name);
    if (Object.hasOwn(all, name)) throw invalidParameter(shownName(name), 'It must appear only once.');
    checkValue(name, value, limits);
    target[name] = value;
    if (target !== all) all[name] = value;
  }
  return count;
}

/**
 * A body carries parameters as a form (v1 signs them; ACS3 covers them by the body hash) or,
 * with an ACS3 signature only, as a JSON object. v1 cannot cover a JSON body, so it is
 * refused rather than silently ignored; any other non-empty body is refused too.
 */
function classifyBody(req: RawRequest): BodyKind {
  if (req.rawBody.length === 0) return 'none';
  const type = mediaType(req.headers);
  if (type === FORM_MEDIA_TYPE) return 'form';
  if (type === JSON_MEDIA_TYPE) {
    if (req.headers['authorization'] === undefined) {
      throw malformedBody('A JSON body is read only with an ACS3-HMAC-SHA256 signature; send v1 parameters in the query or a form body.');
    }
    return 'json';
  }
  throw malformedBody(`A request body must be ${FORM_MEDIA_TYPE} or ${JSON_MEDIA_TYPE}.`);
}

function mediaType(headers: RawRequest['headers']): string | undefined {
  const raw = headers['content-type'];
  const value = Array.isArray(raw) ? raw[0] : raw;
  return value?.split(';')[0]?.trim().toLowerCase();
}

function decodeUtf8(body: Buffer): string {
  try {
    return utf8.decode(body);
  } catch {
    throw malformedBody('The request body is not valid UTF-8.');
  }
}

/**
 * Splits `a=1&b=2` into decoded pairs (`+` is a space, then percent-decoding), stopping as
 * soon as there are more than `max`: a huge body is refused without being split first.
 * Empty segments are skipped as `querystring.parse` does.
 */
function decodeForm(raw: string, max: number): string[] {
  const pairs: string[] = [];
  let start = 0;
  while (start <= raw.length) {
    let end = raw.indexOf('&', start);
    if (end === -1) end = raw.length;
    if (end > start) {
      if (pairs.length >= 2 * max) throw tooManyParams(max);
      const segment = raw.slice(start, end);
      const eq = segment.indexOf('=');
      const name = formDecode(eq < 0 ? segment : segment.slice(0, eq));
      if (name === '') throw invalidParameter('Parameters', 'The request contains a parameter with an empty name.');
      pairs.push(name, eq < 0 ? '' : formDecode(segment.slice(eq + 1)));
    }
    start = end + 1;
  }
  return pairs;
}

function formDecode(s: string): string {
  // Most names and many values carry nothing to decode: skip decodeURIComponent (the edge's
  // costliest step per request before this).
  if (s.indexOf('%') === -1 && s.indexOf('+') === -1) return s;
  try {
    return decodeURIComponent(s.indexOf('+') === -1 ? s : s.replace(/\+/g, ' '));
  } catch {
    // Also what an encoded lone surrogate (%ED%A0%80) gives: it is not UTF-8.
    throw invalidParameter('Parameters', 'The request parameters are not valid percent-encoded UTF-8.');
  }
}

/**
 * An ACS3 JSON body: one object whose members are parameters. Scalars become their string
 * form (as the SDKs flatten them); nested objects and arrays travel as their JSON text (an
 * EncryptionContext given as an object, say) once their depth is known to be small.
 */
function decodeJsonBody(text: string, limits: EdgeLimits): string[] {
  let parsed: unknown;
  try {
    // V8's JSON.parse does not recurse on the native stack; JSON.stringify does, hence the depth check below.
    parsed = JSON.parse(text);
  } catch {
    throw malformedBody('The JSON body is malformed.');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw malformedBody('The JSON body must be an object.');
  }
  if (jsonDepth(parsed, limits.maxJsonDepth) > limits.maxJsonDepth) {
    throw malformedBody(`The JSON body is nested deeper than ${limits.maxJsonDepth} levels.`);
  }
  const entries = Object.entries(parsed);
  // JSON.parse keeps the last of two members of one name; a parameter given twice is refused
  // here as in a query or form (found by a probe: the second Plaintext was encrypted).
  const repeated = firstRepeatedName(text);
  if (repeated !== undefined) throw invalidParameter(shownName(repeated), 'It must appear only once.');
  const pairs: string[] = [];
  for (const [name, value] of entries) {
    if (value === null) continue;
    pairs.push(name, typeof value === 'object' ? JSON.stringify(value) : String(value));
  }
  return pairs;
}

/** The first member name of the outermost object (of a text JSON.parse accepted) that a later member repeats. */
function firstRepeatedName(text: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  let expectName = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const start = i;
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
      if (depth === 1 && expectName) {
        const name = JSON.parse(text.slice(start, i + 1)) as string;
        if (seen.has(name)) return name;
        seen.add(name);
        expectName = false;
      }
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
      if (depth === 1) expectName = true;
    } else if (c === 0x7d || c === 0x5d) depth--;
    else if (c === 0x2c && depth === 1) expectName = true;
  }
  return undefined;
}

/** Depth of a parsed JSON value, counted without recursion and abandoned past `limit`. */
function jsonDepth(root: object, limit: number): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[root, 1]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    deepest = Math.max(deepest, depth);
    if (deepest > limit) return deepest;
    for (const child of Object.values(value)) stack.push([child, depth + 1]);
  }
  return deepest;
}

function checkName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw invalidParameter(shownName(name), 'It is not a valid parameter name (letters and digits, with .N indexes).');
  }
}

/** C0 controls and DEL, except tab, line feed and carriage return. */
const CONTROLS_EXCEPT_WHITESPACE = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/;
const ALL_CONTROLS = /[\x00-\x1f\x7f]/;
/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const FORBIDDEN_BY_CHARSET: Readonly<Record<FieldCharset, RegExp | undefined>> = {
  any: undefined,
  text: CONTROLS_EXCEPT_WHITESPACE,
  token: ALL_CONTROLS,
};

/** Printable ASCII only: no control, no surrogate — what nearly every value is, checked in one pass. */
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

function checkValue(name: string, value: string, limits: EdgeLimits): void {
  if (value.length > limits.maxValueLength) {
    throw invalidParameter(shownName(name), `It must be at most ${limits.maxValueLength} characters.`);
  }
  if (PRINTABLE_ASCII.test(value)) return;
  // Would come back altered (U+FFFD) from Decrypt or a store, so it is refused everywhere.
  if (LONE_SURROGATE.test(value)) throw invalidParameter(shownName(name), 'It contains an unpaired UTF-16 surrogate.');
  const forbidden = FORBIDDEN_BY_CHARSET[fieldCharsetOf(name)];
  if (forbidden?.test(value)) throw invalidParameter(shownName(name), 'It contains a control character.');
}
