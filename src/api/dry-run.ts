import { dryRunOutcome } from '../domain/dry-run.js';
import type { KnownParams } from './request/known-params.js';

/** The parameter every crypto action accepts (alibaba-api.md §3.4). */
export const DRY_RUN_PARAM = 'DryRun';

/**
 * Whether a request asks for a dry run: the action accepts `DryRun` and it reads true. Read
 * from the raw parameters, before the action's schema, because a dry run whose other
 * parameters are invalid must still answer `ValidationError` (domain/dry-run.ts).
 */
export function requestsDryRun(known: KnownParams | undefined, params: Readonly<Record<string, string>>): boolean {
  if (!known?.names.has(DRY_RUN_PARAM) || !Object.hasOwn(params, DRY_RUN_PARAM)) return false;
  return params[DRY_RUN_PARAM]!.toLowerCase() === 'true';
}

/** Runs the action's part of a request, re-answering its errors as a dry run does when `dryRun`. */
export async function withDryRunOutcome<T>(dryRun: boolean, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw dryRun ? dryRunOutcome(error) : error;
  }
}
