import { z } from 'zod';
import { KmsError, invalidParameter, missingParameter } from '../domain/errors.js';

/**
 * Zod builders for RPC parameters. Every parameter arrives as a string (the SDKs flatten
 * booleans and numbers with String()), so these parse from strings. Validation happens once,
 * here at the edge; the schema's message is what the client reads.
 */
export const p = {
  string: (max = 8192) => z.string().min(1, 'It must not be empty.').max(max, `It must be at most ${max} characters.`),
  optionalString: (max = 8192) => z.string().max(max, `It must be at most ${max} characters.`).optional(),
  enum: <T extends string>(values: readonly [T, ...T[]]) =>
    z.enum(values, { errorMap: () => ({ message: `Valid values: ${values.join(', ')}.` }) }),
  boolean: () =>
    z
      .enum(['true', 'false', 'True', 'False', 'TRUE', 'FALSE'], { errorMap: () => ({ message: 'It must be true or false.' }) })
      .transform((v) => v.toLowerCase() === 'true'),
  integer: (min: number, max: number) =>
    z
      .string()
      .regex(/^-?\d{1,15}$/, 'It must be an integer.')
      .transform(Number)
      .refine((n) => n >= min && n <= max, `It must be between ${min} and ${max}.`),
  pageNumber: () => p.integer(1, 1_000_000).optional().transform((n) => n ?? 1),
  pageSize: (defaultSize = 10, max = 100) => p.integer(1, max).optional().transform((n) => n ?? defaultSize),
};

/** Parsed parameters under the names the services take: `KeyId` → `keyId`, `DryRun` → `dryRun`. */
export type ServiceInput<P> = { [K in keyof P as K extends string ? Uncapitalize<K> : never]: P[K] };

/**
 * An action's parsed parameters as its use case's input: the same fields, each name with its
 * first letter lowercased (the services name fields as the API does, in camelCase). The schema
 * has already dropped every name it does not list, so nothing the action does not accept gets
 * through; a parameter the caller left out stays absent.
 */
export function serviceInput<P extends Record<string, unknown>>(params: P): ServiceInput<P> {
  const input: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(params)) input[name.charAt(0).toLowerCase() + name.slice(1)] = value;
  return input as ServiceInput<P>;
}

/** Parses the raw parameters with an action's schema; the first problem becomes Alibaba's error. */
export function parseParams<S extends z.ZodTypeAny>(schema: S, raw: Readonly<Record<string, string>>): z.infer<S> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  throw toKmsError(result.error);
}

function toKmsError(error: z.ZodError): KmsError {
  const issue = error.issues[0];
  const name = String(issue?.path[0] ?? 'parameter');
  if (issue?.code === 'invalid_type' && issue.received === 'undefined') return missingParameter(name);
  return invalidParameter(name, issue?.message);
}
