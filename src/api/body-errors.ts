import { KmsError } from '../domain/errors.js';

/**
 * Failures of express's body reader (body-parser over raw-body), recognised by the `type`
 * each one carries (their stable code; the messages are not used), answered the Alibaba way
 * instead of as a 500. `status` overrides the error-code table where HTTP has a precise answer.
 */
export interface BodyReadRefusal {
  status: number;
  error: KmsError;
}

const unreadableBody = () => new KmsError('InvalidParameter', 'The specified parameter is not valid. The request body could not be read.');

const REFUSALS: Readonly<Record<string, () => BodyReadRefusal>> = {
  // Bodies are limited to 4 MiB (app.ts); alibaba-api.md §5.11 has instance APIs answer 413 too.
  'entity.too.large': () => ({ status: 413, error: new KmsError('RequestEntityTooLarge', 'The request body is too large.') }),
  // Our choice: bodies are read as sent, never inflated (the signature covers the bytes on the
  // wire and no Alibaba SDK compresses), so any Content-Encoding but identity is 415.
  'encoding.unsupported': () => ({
    status: 415,
    error: new KmsError('InvalidParameter', 'The specified parameter "Content-Encoding" is not valid. Send the body unencoded (identity).'),
  }),
  'charset.unsupported': () => ({
    status: 415,
    error: new KmsError('InvalidParameter', 'The specified parameter "Content-Type" is not valid. Its charset is not supported.'),
  }),
  // The client stopped sending (it is usually gone; the answer is for the log and a half-open peer).
  'request.aborted': () => ({ status: 400, error: unreadableBody() }),
  // Fewer bytes than Content-Length announced.
  'request.size.invalid': () => ({ status: 400, error: unreadableBody() }),
  // Whoever read or decoded the stream before the parser; still the request's body that could not be read.
  'stream.encoding.set': () => ({ status: 400, error: unreadableBody() }),
  'stream.not.readable': () => ({ status: 400, error: unreadableBody() }),
  'entity.parse.failed': () => ({ status: 400, error: unreadableBody() }),
  'entity.verify.failed': () => ({ status: 400, error: unreadableBody() }),
};

/** The answer to a body-reader failure, or undefined for any other error. */
export function bodyReadRefusal(error: unknown): BodyReadRefusal | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const type = (error as { type?: unknown }).type;
  if (typeof type !== 'string' || !Object.hasOwn(REFUSALS, type)) return undefined;
  return REFUSALS[type]!();
}

/**
 * What Node's HTTP parser refuses before express sees a request (a body shorter than its
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
