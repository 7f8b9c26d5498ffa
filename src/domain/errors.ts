/**
 * Typed errors that carry Alibaba's error code and a kind. The API maps the code to the
 * HTTP status in one table (api/errors.ts); workers treat `client` errors as final and
 * retry `unavailable` ones. Messages never contain key material, PINs or secrets.
 */
export type ErrorKind = 'client' | 'unavailable' | 'internal';

export class KmsError extends Error {
  override readonly name = 'KmsError';
  constructor(
    /** Alibaba error code, e.g. `Forbidden.KeyNotFound`. */
    readonly code: string,
    message: string,
    readonly kind: ErrorKind = 'client',
  ) {
    super(message);
  }
}

export const missingParameter = (name: string) =>
  new KmsError('MissingParameter', `The parameter "${name}" is needed but not provided.`);

export const invalidParameter = (name: string, detail?: string) =>
  new KmsError(
    'InvalidParameter',
    `The specified parameter "${name}" is not valid.${detail ? ` ${detail}` : ''}`,
  );

export const keyNotFound = () => new KmsError('Forbidden.KeyNotFound', 'The specified Key is not found.');
export const aliasNotFound = () => new KmsError('Forbidden.AliasNotFound', 'The specified Alias is not found.');
export const instanceNotFound = () =>
  new KmsError('Forbidden.DKMSInstanceNotFound', 'The specified DKMS Instance is not found.');
export const noPermission = () =>
  new KmsError('Forbidden.NoPermission', 'This operation is forbidden by permission system.');

/** Key states that have their own `Rejected.<State>` code. */
export type RejectableState = 'Enabled' | 'Disabled' | 'PendingDeletion' | 'PendingImport';

export const rejectedState = (state: RejectableState) =>
  new KmsError(`Rejected.${state}`, `The request was rejected because the key state is ${state}.`);

export const stateModifiedFailed = () =>
  new KmsError('Rejected.StateModifiedFailed', 'Keystate modified failed.');

export const limitExceeded = (what: string) =>
  new KmsError(
    'Rejected.LimitExceeded',
    `The request was rejected because user create resource limit was exceeded: ${what}.`,
  );

export const unsupportedOperation = (detail: string) =>
  new KmsError('Rejected.UnsupportedOperation', `Unsupported operation. ${detail}`);

export const unavailable = (detail: string) =>
  new KmsError('ServiceUnavailableTemporary', `Service Unavailable Temporary. ${detail}`, 'unavailable');

export const internalFailure = (detail: string) =>
  new KmsError('InternalFailure', `Internal Failure. ${detail}`, 'internal');

/** `InvalidCiphertext` (400): the CiphertextBlob is malformed or names no version of this key. */
export const invalidCiphertext = () => new KmsError('InvalidCiphertext', 'The ciphertext is invalid.');

/** `InvalidKeyMaterial` (400): one uniform error for every unwrap/decoding failure (no oracle). */
export const invalidKeyMaterial = () => new KmsError('InvalidKeyMaterial', 'key material is invalid.');

/** `InvalidImportToken` (400): malformed, forged, or issued for another key. */
export const invalidImportToken = () => new KmsError('InvalidImportToken', 'import token is invalid.');

/** `ExpiredImportToken` (400): the token's 24 h lifetime is over. */
export const expiredImportToken = () => new KmsError('ExpiredImportToken', 'import token is expired.');

/** `AliasAlreadyExists` (400, alibaba-api.md §5.6/§5.10): an alias name is unique per region. */
export const aliasAlreadyExists = () => new KmsError('AliasAlreadyExists', 'AliasName Already Exists.');

/**
 * `Forbidden.DeletionProtection` (403). §5.1 says ScheduleKeyDeletion fails while deletion
 * protection is on, but no doc names the code: ours follows `Forbidden.DKMSInstanceStateInvalid`
 * (403, a resource's setting forbids the call); `Rejected.*` (409) stays for key *states*.
 */
export const deletionProtected = () =>
  new KmsError(
    'Forbidden.DeletionProtection',
    'The key is protected from deletion. Call SetDeletionProtection with EnableDeletionProtection=false first.',
  );

/** A KeyVersionId that names no version of the key: Alibaba documents only `Forbidden.KeyNotFound` (404). */
export const keyVersionNotFound = () =>
  new KmsError('Forbidden.KeyNotFound', 'The specified key version is not found.');

/**
 * `Rejected.PendingRotation` (409), our code in Alibaba's `Rejected.<State>` family: the key
 * already has new imported material waiting to be rotated in, and seed 002 allows no second
 * one ("現在の新しいバージョンがローテーションされるまで、別のキーバージョンをインポートすることはできません").
 */
export const pendingRotationExists = () =>
  new KmsError(
    'Rejected.PendingRotation',
    'The request was rejected because the key has a key version pending rotation. Rotate it in with CreateKeyVersion first.',
  );
