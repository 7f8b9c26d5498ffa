import { KmsError } from '../domain/errors.js';

/**
 * The one table from Alibaba error code to HTTP status (alibaba-api.md §5.10). Codes not
 * listed are client errors (400). `unavailable` errors answer 503, `internal` ones 500.
 */
const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  MissingParameter: 400,
  InvalidParameter: 400,
  IncompleteSignature: 400,
  IllegalTimestamp: 400,
  SignatureNonceUsed: 400,
  ParseRequestParameterException: 400,
  InvalidCiphertext: 400,
  InvalidKeyMaterial: 400,
  InvalidImportToken: 400,
  ExpiredImportToken: 400,
  AliasAlreadyExists: 400,
  // Our choice (KMS docs silent; Alibaba's ECS and AWS name it so): services/idempotency.ts.
  IdempotentParameterMismatch: 400,
  'Unsupported.Origin': 400,
  'Unsupported.Alias': 400,
  'Rejected.LimitExceeded': 400,
  'Rejected.UnsupportedOperation': 400,
  'Rejected.Throttling': 429,
  SignatureDoesNotMatch: 400,
  'InvalidAction.NotFound': 404,
  InvalidVersion: 400,
  'InvalidAccessKeyId.NotFound': 404,
  'Forbidden.KeyNotFound': 404,
  'Forbidden.AliasNotFound': 404,
  'Forbidden.DKMSInstanceNotFound': 403,
  'Forbidden.NoPermission': 403,
  // Our choice (docs silent): see domain/errors.ts deletionProtected.
  'Forbidden.DeletionProtection': 403,
  'Forbidden.AccessKey': 403,
  UnsupportedHTTPMethod: 403,
  'Rejected.Enabled': 409,
  'Rejected.Disabled': 409,
  'Rejected.PendingDeletion': 409,
  'Rejected.PendingImport': 409,
  'Rejected.StateModifiedFailed': 409,
  // Our code (docs silent): see domain/errors.ts pendingRotationExists.
  'Rejected.PendingRotation': 409,
  // DryRun (§3.4, §5.10 "400 (DryRun)"); AccessDeniedError is 403 like Forbidden.NoPermission (our choice).
  DryRunOperationError: 400,
  ValidationError: 400,
  AccessDeniedError: 403,
  ServiceUnavailableTemporary: 503,
  InternalFailure: 500,
};

/** What error bodies name as the answering host. */
export const HOST_ID = 'kms.hsm-kms.local';

export interface ErrorBody {
  RequestId: string;
  HostId: string;
  Code: string;
  Message: string;
  Recommend: string;
  HttpStatus: number;
}

export function httpStatusOf(error: KmsError): number {
  if (error.kind === 'unavailable') return 503;
  if (error.kind === 'internal') return 500;
  return STATUS_BY_CODE[error.code] ?? 400;
}

/**
 * Shapes any thrown value as Alibaba's error body. Anything that is not a KmsError is an
 * internal failure: the client sees only the request id, never the stack or the text.
 */
export function toErrorResponse(error: unknown, requestId: string, hostId: string): { status: number; body: ErrorBody; internal: boolean } {
  const kmsError =
    error instanceof KmsError ? error : new KmsError('InternalFailure', 'Internal Failure.', 'internal');
  const status = httpStatusOf(kmsError);
  const internal = kmsError.kind === 'internal';
  const message = internal ? `Internal Failure. Quote request id ${requestId} to the operator.` : kmsError.message;
  const code = internal ? 'InternalFailure' : kmsError.code;
  return {
    status,
    internal,
    body: {
      RequestId: requestId,
      HostId: hostId,
      Code: code,
      Message: message,
      Recommend: `https://api.aliyun.com/troubleshoot?q=${encodeURIComponent(code)}&product=Kms`,
      HttpStatus: status,
    },
  };
}
