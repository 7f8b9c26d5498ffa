import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import { KmsError, noPermission } from '../domain/errors.js';
import type { KmsServices } from '../kms.js';
import type { Caller } from '../services/context.js';
import type { Action, ActionTable } from './actions/action.js';
import { translatePgError } from '../store/db.js';
import { HOST_ID, toErrorResponse } from './errors.js';
import { parseParams } from './params.js';
import { type SignedRequest, checkTimestamp, parseSignedRequest, verifySignature } from './signature.js';

const API_VERSION = '2016-01-20';

/** Signed-request parameters that are protocol, not business: never passed to an action. */
const COMMON_PARAMS = new Set([
  'Action', 'Version', 'Format', 'Timestamp', 'SignatureNonce', 'SignatureMethod', 'SignatureVersion',
  'AccessKeyId', 'SecurityToken', 'RegionId',
]);

/**
 * The Alibaba RPC endpoint: `POST /` with the action in `Action` (v1) or `x-acs-action`
 * (ACS3), parameters in the query (or a form body), both signature schemes, JSON answers
 * with RequestId, and Alibaba's error body on any failure.
 */
export function createRpcHandler(kms: KmsServices, actions: ActionTable) {
  const { logger, clock, config } = kms.deps;
  return async (req: Request, res: Response): Promise<void> => {
    const requestId = randomUUID().toUpperCase();
    const started = process.hrtime.bigint();
    let action: string | undefined;
    let caller: Caller | undefined;
    try {
      const signed = parseSignedRequest({
        method: req.method,
        path: req.path,
        rawQuery: rawQueryOf(req.originalUrl),
        headers: req.headers,
        rawBody: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
      });
      action = signed.action;
      caller = await authenticate(kms, signed, requestId, clock.now(), config.maxSkewSeconds * 1000);
      if (!action) throw new KmsError('MissingParameter', 'The parameter "Action" is needed but not provided.');
      if (signed.version !== undefined && signed.version !== API_VERSION) {
        throw new KmsError('InvalidVersion', `Specified parameter Version is not valid; this endpoint serves ${API_VERSION}.`);
      }
      const handler: Action | undefined = Object.hasOwn(actions, action) ? actions[action] : undefined;
      if (!handler) throw new KmsError('InvalidAction.NotFound', `Specified api ${action} is not found, please check your url and method.`);
      authorize(caller, handler);
      const params = parseParams(handler.params, businessParams(signed, req));
      const result = await handler.handle(params, { kms, caller, requestId });
      res.status(200).set('x-acs-request-id', requestId).type('application/json;charset=utf-8').send(
        JSON.stringify({ RequestId: requestId, ...result }),
      );
      logger.info({ requestId, action, accessKeyId: caller.accessKeyId, ms: msSince(started) }, 'rpc');
    } catch (error) {
      const { status, body, internal } = toErrorResponse(translatePgError(error), requestId, HOST_ID);
      if (internal) logger.error({ requestId, action, err: error }, 'rpc internal failure');
      else logger.info({ requestId, action, accessKeyId: caller?.accessKeyId, code: body.Code, status, ms: msSince(started) }, 'rpc refused');
      res.status(status).set('x-acs-request-id', requestId).type('application/json;charset=utf-8').send(JSON.stringify(body));
    }
  };
}

/** Timestamp window, access key, signature, then the nonce (claimed only for a valid signature, so nobody can burn another's nonces). */
async function authenticate(kms: KmsServices, signed: SignedRequest, requestId: string, now: Date, maxSkewMs: number): Promise<Caller> {
  checkTimestamp(signed.timestamp, now, maxSkewMs);
  const { accessKey, secret } = await kms.credentials.lookup(signed.accessKeyId);
  verifySignature(signed, secret);
  await kms.nonces.claim(accessKey.id, signed.nonce);
  return { accessKeyId: accessKey.id, role: accessKey.role, instanceIds: accessKey.instanceIds, requestId };
}

function authorize(caller: Caller, action: Action): void {
  if (caller.role === 'admin') return;
  if (action.access === 'admin') throw noPermission();
}

/** Query/form parameters minus the protocol ones; an ACS3 JSON body (covered by x-acs-content-sha256) adds to them. */
function businessParams(signed: SignedRequest, req: Request): Record<string, string> {
  const params: Record<string, string> = {};
  for (const [name, value] of Object.entries(signed.params)) {
    if (!COMMON_PARAMS.has(name)) params[name] = value;
  }
  if (signed.scheme === 'ACS3-HMAC-SHA256' && req.is('application/json') && Buffer.isBuffer(req.body) && req.body.length > 0) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(req.body.toString('utf8'));
    } catch {
      throw new KmsError('ParseRequestParameterException', 'Server parse parameters exception. The JSON body is malformed.');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new KmsError('ParseRequestParameterException', 'Server parse parameters exception. The JSON body must be an object.');
    }
    for (const [name, value] of Object.entries(parsed)) {
      if (COMMON_PARAMS.has(name) || value === null || value === undefined) continue;
      params[name] = typeof value === 'object' ? JSON.stringify(value) : String(value);
    }
  }
  return params;
}

function rawQueryOf(url: string): string {
  const index = url.indexOf('?');
  return index === -1 ? '' : url.slice(index + 1);
}

function msSince(start: bigint): number {
  return Number((process.hrtime.bigint() - start) / 1000n) / 1000;
}
