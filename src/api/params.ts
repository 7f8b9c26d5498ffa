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
