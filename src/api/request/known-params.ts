import { z } from 'zod';
import { invalidParameter } from '../../domain/errors.js';
import type { Action } from '../actions/action.js';
import { indexedSpecOf, listPattern, recordPattern } from '../indexed-params.js';
import { shownName } from './collect-params.js';

/**
 * Protocol parameters every action accepts (alibaba-api.md §4.3: 1.2.0, openapi-client v2 and
 * pop-core send these in the query or form body; `RegionId` rides along on some SDKs).
 */
export const COMMON_PARAMS: ReadonlySet<string> = new Set([
  'Action', 'Version', 'Format', 'Timestamp', 'SignatureNonce', 'SignatureMethod', 'SignatureVersion',
  'Signature', 'AccessKeyId', 'SecurityToken', 'RegionId',
]);

/** The names one action accepts: plain fields, and patterns for its `Name.N` / `Name.N.Field` lists. */
export interface KnownParams {
  readonly names: ReadonlySet<string>;
  readonly patterns: readonly RegExp[];
}

/** Reads an action's accepted parameter names off its zod schema (plain object, or one wrapped by withIndexed). */
export function knownParamsOf(action: Action): KnownParams {
  const spec = indexedSpecOf(action.params);
  let schema: z.ZodTypeAny = action.params;
  while (schema instanceof z.ZodEffects) schema = schema.innerType();
  const shape = schema instanceof z.ZodObject ? (schema.shape as Record<string, unknown>) : {};
  const names = new Set<string>();
  const patterns: RegExp[] = [];
  for (const name of Object.keys(shape)) {
    if (!name.endsWith('.N')) {
      names.add(name);
      continue;
    }
    const base = name.slice(0, -2);
    const fields = spec?.records?.[base];
    patterns.push(fields ? recordPattern(base, fields) : listPattern(base));
  }
  return { names, patterns };
}

/**
 * Refuses a parameter the action does not know. Silently ignoring one would let a caller
 * believe an option took effect (or, for a misspelt DKMSInstanceId, create a key elsewhere).
 * @throws KmsError `InvalidParameter` (400)
 */
export function assertKnownParams(actionName: string, known: KnownParams, params: Readonly<Record<string, string>>): void {
  for (const name of Object.keys(params)) {
    if (COMMON_PARAMS.has(name) || known.names.has(name) || known.patterns.some((re) => re.test(name))) continue;
    throw invalidParameter(shownName(name), `It is not a parameter of ${actionName}.`);
  }
}
