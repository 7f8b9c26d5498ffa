/**
 * DryRun (alibaba-api.md §3.4, §5.10): every crypto action accepts `DryRun=true`, and then the
 * call *always fails* — `DryRunOperationError` when it would have succeeded, `ValidationError`
 * or `AccessDeniedError` otherwise — and changes, encrypts or returns nothing.
 *
 * Statuses (our choice; §5.10 lists the three codes under "400 (DryRun)"): DryRunOperationError
 * and ValidationError 400, AccessDeniedError 403 like Forbidden.NoPermission. The message of a
 * ValidationError keeps the code the real call would have answered, so a dry run says why.
 */
import { KmsError } from './errors.js';

/** The call would have succeeded. Services throw it at the point where the real call acts. */
export const dryRunSucceeded = () =>
  new KmsError('DryRunOperationError', 'Request would have succeeded, but the DryRun parameter was set.');

/**
 * Refusals of the request itself rather than of the action, which a dry run answers as they
 * are: over a QPS limit, or a replayed nonce (claimed with the QPS admission, inside the action).
 */
const REQUEST_CODES: ReadonlySet<string> = new Set(['Rejected.Throttling', 'SignatureNonceUsed']);

/** Codes that mean the caller may not do this at all (access key role or status). */
const ACCESS_CODES: ReadonlySet<string> = new Set(['Forbidden.NoPermission', 'Forbidden.AccessKey']);

/**
 * What a dry run answers for an error the real call would have raised: client errors become
 * `AccessDeniedError` or `ValidationError` (a key missing or not visible to the caller is a
 * ValidationError alike, so a dry run is no oracle of other instances' keys, issue 13);
 * `unavailable` and `internal` errors, throttling and replays, and anything that is not a
 * KmsError, pass unchanged.
 */
export function dryRunOutcome(error: unknown): unknown {
  if (!(error instanceof KmsError) || error.kind !== 'client' || error.code === 'DryRunOperationError') return error;
  if (REQUEST_CODES.has(error.code)) return error;
  if (ACCESS_CODES.has(error.code)) return new KmsError('AccessDeniedError', `${error.code}: ${error.message}`);
  return new KmsError('ValidationError', `${error.code}: ${error.message}`);
}
