import type { IncomingMessage } from 'node:http';
import { BodyReadError, bodyAborted, bodyTooLarge, encodingUnsupported } from '../body-errors.js';

/** The largest request body the edge reads (alibaba-api.md §4.2: a 6 KiB plaintext is the largest real value). */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

const EMPTY = Buffer.alloc(0);

/**
 * The request body exactly as sent: never inflated (the signature covers the bytes on the
 * wire), at most `limit` bytes. A refused body is read to its end and discarded before the
 * refusal is thrown, so the answer reaches a client still sending it (closing on unread data
 * would reset the connection under the answer); the request deadline bounds that wait.
 * @throws BodyReadError 413 (too large), 415 (a Content-Encoding), 400 (aborted)
 */
export function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  const headers = req.headers;
  const lengthHeader = headers['content-length'];
  const chunked = headers['transfer-encoding'] !== undefined;
  // No body announced: nothing to read (Node's parser has nothing for this request either).
  if (!chunked && lengthHeader === undefined) return Promise.resolve(EMPTY);
  const encoding = headers['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') return refuseAfterDrain(req, new BodyReadError(encodingUnsupported()));
  if (!chunked && lengthHeader === '0') return Promise.resolve(EMPTY);
  const announced = chunked ? undefined : Number(lengthHeader);
  if (announced !== undefined && announced > limit) return refuseAfterDrain(req, new BodyReadError(bodyTooLarge()));
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let tooLarge = false;
    let settled = false;
    const settle = (error: Error | undefined, body?: Buffer) => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      if (error) reject(error);
      else resolve(body!);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > limit) {
        // Keep reading (and dropping) to the end; answer then.
        tooLarge = true;
        chunks.length = 0;
      } else if (!tooLarge) chunks.push(chunk);
    };
    const onEnd = () => {
      if (tooLarge) settle(new BodyReadError(bodyTooLarge()));
      else settle(undefined, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received));
    };
    // Closed before its end: the client aborted (or the request deadline destroyed the socket).
    const onClose = () => settle(new BodyReadError(bodyAborted()));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    // 'error' (ECONNRESET "aborted") is followed by 'close'; a listener keeps it from being thrown.
    req.on('error', ignore);
  });
}

function ignore(): void {}

/** Reads the rest of the body into nothing, then rejects with `error` (at once if the client is gone). */
function refuseAfterDrain(req: IncomingMessage, error: BodyReadError): Promise<never> {
  return new Promise<never>((_resolve, reject) => {
    if (req.complete || req.destroyed) {
      reject(error);
      return;
    }
    const done = () => reject(error);
    req.once('end', done);
    req.once('close', done);
    req.on('error', ignore);
    req.resume();
  });
}
