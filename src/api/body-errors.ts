import { KmsError } from '../domain/errors.js';

/**
 * A request the edge refuses before any route reads it (its body could not be read, or
 * Node's parser gave up on it), answered the Alibaba way instead of as a 500. `status`
 * overrides the error-code table where HTTP has a precise answer.
 */
export interface BodyReadRefusal {
  status: number;
  error: KmsError;
}

/** Thrown by the body reader (http/body.ts); the edge answers it with its status. */
export class BodyReadError extends Error {
  override readonly name = 'BodyReadError';
  constructor(readonly refusal: BodyReadRefusal) {
    super(refusal.error.message);
  }
}

const unreadableBody = () => new KmsError('InvalidParameter', 'The specified parameter is not valid. The request body could not be read.');

/** Bodies are limited to 4 MiB (http/body.ts); alibaba-api.md §5.11 has instance APIs answer 413 too. */
export const bodyTooLarge = (): BodyReadRefusal => ({ status: 413, error: new KmsError('RequestEntityTooLarge', 'The request body is too large.') });

/**
 * Our choice: bodies are read as sent, never inflated (the signature covers the bytes on the
 * wire and no Alibaba SDK compresses), so any Content-Encoding but identity is 415.
 */
export const encodingUnsupported = (): BodyReadRefusal => ({
  status: 415,
  error: new KmsError('InvalidParameter', 'The specified parameter "Content-Encoding" is not valid. Send the body unencoded (identity).'),
});

/** The client stopped sending before the body was complete (it is usually gone; the answer is for the log and a half-open peer). */
export const bodyAborted = (): BodyReadRefusal => ({ status: 400, error: unreadableBody() });

/** The answer to a body-reader failure, or undefined for any other error. */
export function bodyReadRefusal(error: unknown): BodyReadRefusal | undefined {
  return error instanceof BodyReadError ? error.refusal : undefined;
}

/**
 * What Node's HTTP parser refuses before a route sees a request (a body shorter than its
 * Content-Length, a malformed request line, a request past its deadline), by the error's
 * `code`. Node's own answer is a bare `400 Bad Request` without a body; ours is Alibaba's body.
 */
export function clientErrorRefusal(code: string | undefined): BodyReadRefusal {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      // Our choice (Alibaba documents none): the status says it, the code repeats it.
      return { status: 408, error: new KmsError('RequestTimeout', 'The request was not received completely in time.') };
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, error: new KmsError('InvalidParameter', 'The specified parameter is not valid. The request headers are too large.') };
    default:
      return { status: 400, error: new KmsError('InvalidParameter', 'The specified parameter is not valid. The request is malformed.') };
  }
}
