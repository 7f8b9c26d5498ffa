import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { KmsError } from '../../domain/errors.js';
import { HOST_ID, toErrorResponse } from '../errors.js';

/** The content type of every answer (the one Alibaba's endpoints send). */
export const JSON_CONTENT_TYPE = 'application/json;charset=utf-8';

/** A request id as Alibaba writes them: an upper-case UUID. */
export const newRequestId = (): string => randomUUID().toUpperCase();

/**
 * Writes a JSON answer in one go (status line, headers and body in a single write). The peer
 * may be gone (an aborted body): there is then nobody to answer, and nothing is written.
 */
export function sendJson(res: ServerResponse, status: number, json: string, requestId?: string): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string | number> = { 'content-type': JSON_CONTENT_TYPE, 'content-length': Buffer.byteLength(json) };
  if (requestId !== undefined) headers['x-acs-request-id'] = requestId;
  res.writeHead(status, headers);
  res.end(json);
}

/** Answers `error` with Alibaba's error body, `status` overriding the code's own status. */
export function sendError(res: ServerResponse, error: KmsError, requestId = newRequestId(), status?: number): void {
  const answer = toErrorResponse(error, requestId, HOST_ID);
  const answered = status ?? answer.status;
  sendJson(res, answered, JSON.stringify({ ...answer.body, HttpStatus: answered }), requestId);
}
