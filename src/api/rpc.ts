import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import { systemClock } from '../clock.js';
import { KmsError, invalidParameter, noPermission } from '../domain/errors.js';
import type { KmsServices } from '../kms.js';
import { assertAccessKeyEnabled } from '../services/access.js';
import type { Caller } from '../services/context.js';
import type { Action, ActionTable } from './actions/action.js';
import { translatePgError } from '../store/db.js';
import { requestsDryRun, withDryRunOutcome } from './dry-run.js';
import { HOST_ID, toErrorResponse } from './errors.js';
import { parseParams } from './params.js';
import { collectParams, shownName } from './request/collect-params.js';
import { COMMON_PARAMS, assertKnownParams, knownParamsOf } from './request/known-params.js';
import { type SignedRequest, checkTimestamp, parseSignedRequest, verifySignature } from './signature.js';

const API_VERSION = '2016-01-20';

/**
 * The Alibaba RPC endpoint: `POST /` with the action in `Action` (v1) or `x-acs-action`
 * (ACS3), parameters in the query, a form body or an ACS3 JSON body, both signature schemes,
 * JSON answers with RequestId, and Alibaba's error body on any failure.
 *
 * Order matters: the edge checks every parameter before anything reads one (a NUL in an
 * AccessKeyId must not reach the access-key lookup); the Host and the signature come before
 * the action is looked at; the action's own schema owns every field rule.
 */
export function createRpcHandler(kms: KmsServices, actions: ActionTable) {
  const { logger, config } = kms.deps;
  const knownParams = new Map(Object.entries(actions).map(([name, action]) => [name, knownParamsOf(action)]));
  return async (req: Request, res: Response): Promise<void> => {
    const requestId = randomUUID().toUpperCase();
    const started = process.hrtime.bigint();
    let action: string | undefined;
    let caller: Caller | undefined;
    try {
      const raw = {
        method: req.method,
        path: req.path,
        rawQuery: rawQueryOf(req.originalUrl),
        headers: req.headers,
        rawBody: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
      };
      const collected = collectParams(raw);
      const signed = parseSignedRequest(raw, collected);
      checkHost(req.headers.host, config.allowedHosts);
      action = signed.action;
      // The wall clock, whatever KMS_CLOCK says: real clients sign with real time, and the
      // time machine (shared-offset-clock.ts) moves only the service's clock.
      caller = await authenticate(kms, signed, requestId, systemClock.now(), config.maxSkewSeconds * 1000);
      if (!action) throw new KmsError('MissingParameter', 'The parameter "Action" is needed but not provided.');
      if (signed.version !== undefined && signed.version !== API_VERSION) {
        throw new KmsError('InvalidVersion', `Specified parameter Version is not valid; this endpoint serves ${API_VERSION}.`);
      }
      const handler: Action | undefined = Object.hasOwn(actions, action) ? actions[action] : undefined;
      if (!handler) throw new KmsError('InvalidAction.NotFound', `Specified api ${shownName(action)} is not found, please check your url and method.`);
      const known = knownParams.get(action)!;
      const actionName = action;
      const actor = caller;
      // §3.4: with DryRun=true every outcome of the action's part is a DryRun-family error.
      const result = await withDryRunOutcome(requestsDryRun(known, signed.params), async () => {
        authorize(actor, handler);
        assertKnownParams(actionName, known, signed.params);
        const params = parseParams(handler.params, businessParams(signed.params));
        return handler.handle(params, { kms, caller: actor, requestId });
      });
      res.status(200).set('x-acs-request-id', requestId).type('application/json;charset=utf-8').send(
        JSON.stringify({ RequestId: requestId, ...result }),
      );
      logger.info({ requestId, action, accessKeyId: caller.accessKeyId, ms: msSince(started) }, 'rpc');
    } catch (error) {
      const { status, body, internal } = toErrorResponse(translatePgError(error), requestId, HOST_ID);
      const shownAction = action === undefined ? undefined : shownName(action);
      if (internal) logger.error({ requestId, action: shownAction, err: error }, 'rpc internal failure');
      else logger.info({ requestId, action: shownAction, accessKeyId: caller?.accessKeyId, code: body.Code, status, ms: msSince(started) }, 'rpc refused');
      res.status(status).set('x-acs-request-id', requestId).type('application/json;charset=utf-8').send(JSON.stringify(body));
    }
  };
}

/**
 * `KMS_ALLOWED_HOSTS` (empty: any). ACS3 signs the Host header, so a request signed for
 * another endpoint (kms.cn-shanghai.aliyuncs.com, say) is still valid by its signature;
 * a deployment that wants requests meant for it alone lists its names here.
 */
function checkHost(host: string | undefined, allowed: readonly string[]): void {
  if (allowed.length === 0) return;
  const name = (host ?? '').trim().toLowerCase();
  if (!allowed.includes(name)) {
    throw invalidParameter('Host', 'The request is addressed to a host this endpoint does not serve (KMS_ALLOWED_HOSTS).');
  }
}

/** Timestamp window, access key, signature, the key's status (only now: no oracle of disabled ids), then the nonce (claimed only for a valid signature, so nobody can burn another's nonces). */
async function authenticate(kms: KmsServices, signed: SignedRequest, requestId: string, now: Date, maxSkewMs: number): Promise<Caller> {
  checkTimestamp(signed.timestamp, now, maxSkewMs);
  const { accessKey, secret } = await kms.credentials.lookup(signed.accessKeyId);
  verifySignature(signed, secret);
  assertAccessKeyEnabled(accessKey);
  await kms.nonces.claim(accessKey.id, signed.nonce);
  return { accessKeyId: accessKey.id, role: accessKey.role, instanceIds: accessKey.instanceIds, requestId };
}

function authorize(caller: Caller, action: Action): void {
  if (caller.role === 'admin') return;
  if (action.access === 'admin') throw noPermission();
}

/** The action's own parameters: everything the edge collected minus the protocol ones. */
function businessParams(all: Readonly<Record<string, string>>): Record<string, string> {
  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of Object.entries(all)) {
    if (!COMMON_PARAMS.has(name)) params[name] = value;
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
