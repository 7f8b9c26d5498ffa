import type { IncomingMessage, ServerResponse } from 'node:http';
import { systemClock } from '../clock.js';
import { faultPoint, inFaultScope } from '../fault-points.js';
import { KmsError, invalidParameter, noPermission } from '../domain/errors.js';
import type { KmsServices } from '../kms.js';
import { assertAccessKeyEnabled } from '../services/access.js';
import type { Caller } from '../services/context.js';
import type { Action, ActionTable } from './actions/action.js';
import type { RouteHandler } from './route.js';
import { successLineSampler } from '../observability/request-log.js';
import { notifyObservers } from '../observability/request-outcome.js';
import { translatePgError } from '../store/db.js';
import { bodyReadRefusal } from './body-errors.js';
import { requestsDryRun, withDryRunOutcome } from './dry-run.js';
import { HOST_ID, toErrorResponse } from './errors.js';
import { readBody } from './http/body.js';
import { newRequestId, sendJson } from './http/reply.js';
import { splitTarget } from './http/target.js';
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
export function createRpcHandler(kms: KmsServices, actions: ActionTable): RouteHandler {
  const { logger, config } = kms.deps;
  const knownParams = new Map(Object.entries(actions).map(([name, action]) => [name, knownParamsOf(action)]));
  // KMS_LOG_REQUESTS: every refusal and failure is logged; success lines all, sampled or none.
  const successLine = successLineSampler(config.requestLog);
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const requestId = newRequestId();
    const started = process.hrtime.bigint();
    let action: string | undefined;
    let caller: Caller | undefined;
    try {
      // The signature covers the body bytes exactly as sent: read raw, never inflated.
      const rawBody = await readBody(req);
      const target = splitTarget(req.url ?? '/') ?? { path: '/', rawQuery: '' };
      const raw = { method: req.method ?? 'POST', path: target.path, rawQuery: target.rawQuery, headers: req.headers, rawBody };
      const collected = collectParams(raw);
      const signed = parseSignedRequest(raw, collected);
      checkHost(req.headers.host, config.allowedHosts);
      action = signed.action;
      // The wall clock, whatever KMS_CLOCK says: real clients sign with real time, and the
      // time machine (shared-offset-clock.ts) moves only the service's clock.
      caller = await authenticate(kms, signed, requestId, req.socket.remoteAddress, systemClock.now(), config.maxSkewSeconds * 1000);
      if (!action) throw new KmsError('MissingParameter', 'The parameter "Action" is needed but not provided.');
      if (signed.version !== undefined && signed.version !== API_VERSION) {
        throw new KmsError('InvalidVersion', `Specified parameter Version is not valid; this endpoint serves ${API_VERSION}.`);
      }
      const handler: Action | undefined = Object.hasOwn(actions, action) ? actions[action] : undefined;
      if (!handler) throw new KmsError('InvalidAction.NotFound', `Specified api ${shownName(action)} is not found, please check your url and method.`);
      // A crypto action claims its nonce with its instance's QPS admission, in one Redis round
      // trip once its key is loaded (services/throttling.ts); every other action claims it now.
      if (handler.access !== 'use') await caller.nonce?.claim();
      // Per-account limits by class (KMS_ACCOUNT_RATE_LIMITS=on; services/throttling.ts), before the action runs.
      if (kms.accountRateLimits.enabled) await kms.accountRateLimits.admit(action);
      const known = knownParams.get(action)!;
      const actionName = action;
      const actor = caller;
      // §3.4: with DryRun=true every outcome of the action's part is a DryRun-family error.
      const result = await withDryRunOutcome(requestsDryRun(known, signed.params), async () => {
        authorize(actor, handler);
        assertKnownParams(actionName, known, signed.params);
        const params = parseParams(handler.params, businessParams(signed.params));
        return inFaultScope(actionName, async () => {
          const answer = await handler.handle(params, { kms, caller: actor, requestId, idempotencyKey: headerValue(req.headers['x-kms-idempotency-key']) });
          faultPoint('after-commit');
          return answer;
        });
      });
      // A crypto action that reached no admission (GetRandomPassword) claims its nonce before answering.
      await actor.nonce?.claim();
      sendJson(res, 200, JSON.stringify({ RequestId: requestId, ...result }), requestId);
      const weight = successLine();
      if (weight === 1) logger.info({ requestId, action, accessKeyId: caller.accessKeyId, ms: msSince(started) }, 'rpc');
      else if (weight > 1) logger.info({ requestId, action, accessKeyId: caller.accessKeyId, ms: msSince(started), sampled: weight }, 'rpc');
      notifyObservers(kms.requestObservers, {
        requestId, action, accessKeyId: caller.accessKeyId, sourceIp: req.socket.remoteAddress, httpStatus: 200,
        seconds: msSince(started) / 1000, keyId: stringField(result, 'KeyId'), keyVersionId: stringField(result, 'KeyVersionId'),
      }, (err) => logger.error({ requestId, err }, 'request observer failed'));
    } catch (thrown) {
      const error = await claimedNonceOr(caller, thrown);
      // A body that could not be read is refused with its own status (413, 415, 400).
      const refusal = bodyReadRefusal(error);
      const answer = toErrorResponse(refusal?.error ?? translatePgError(error), requestId, HOST_ID);
      const status = refusal?.status ?? answer.status;
      const body = { ...answer.body, HttpStatus: status };
      const shownAction = action === undefined ? undefined : shownName(action);
      if (answer.internal) logger.error({ requestId, action: shownAction, err: error }, 'rpc internal failure');
      else if (refusal) logger.info({ requestId, code: body.Code, status }, 'http refused');
      else logger.info({ requestId, action: shownAction, accessKeyId: caller?.accessKeyId, code: body.Code, status, ms: msSince(started) }, 'rpc refused');
      sendJson(res, status, JSON.stringify(body), requestId);
      notifyObservers(kms.requestObservers, {
        requestId, action: shownAction, accessKeyId: caller?.accessKeyId, sourceIp: req.socket.remoteAddress, httpStatus: status,
        code: body.Code, seconds: msSince(started) / 1000, keyId: caller?.resolvedKeyId,
      }, (err) => logger.error({ requestId, err }, 'request observer failed'));
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

/**
 * Timestamp window, access key, signature, the key's status (only now: no oracle of disabled
 * ids), then the nonce: pending in the caller, claimed only for a valid signature (so nobody
 * can burn another's nonces) before the action runs, or by a crypto action together with its
 * QPS admission (see createRpcHandler).
 */
async function authenticate(kms: KmsServices, signed: SignedRequest, requestId: string, sourceIp: string | undefined, now: Date, maxSkewMs: number): Promise<Caller> {
  checkTimestamp(signed.timestamp, now, maxSkewMs);
  const { accessKey, secret } = await kms.credentials.lookup(signed.accessKeyId);
  verifySignature(signed, secret);
  assertAccessKeyEnabled(accessKey);
  const nonce = kms.nonces.pending(accessKey.id, signed.nonce, signed.timestamp);
  return { accessKeyId: accessKey.id, role: accessKey.role, instanceIds: accessKey.instanceIds, requestId, sourceIp, nonce };
}

/**
 * A verified request that failed before its nonce was claimed (an unknown action, a crypto
 * call refused before its admission) claims it now, so a replay is answered
 * SignatureNonceUsed as when the nonce is claimed first; otherwise its own failure stands.
 */
async function claimedNonceOr(caller: Caller | undefined, error: unknown): Promise<unknown> {
  if (!caller?.nonce || caller.nonce.isClaimed) return error;
  try {
    await caller.nonce.claim();
  } catch (claimError) {
    if (claimError instanceof KmsError && claimError.code === 'SignatureNonceUsed') return claimError;
  }
  return error;
}

function authorize(caller: Caller, action: Action): void {
  if (caller.role === 'admin') return;
  if (action.access === 'admin') throw noPermission();
}

/** The action's own parameters: everything the edge collected minus the protocol ones. */
function businessParams(all: Readonly<Record<string, string>>): Record<string, string> {
  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  // for-in over the null-prototype record: no [name, value] array per entry (Object.entries) per request.
  for (const name in all) {
    if (!COMMON_PARAMS.has(name)) params[name] = all[name]!;
  }
  return params;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function stringField(result: object, name: string): string | undefined {
  const value = (result as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : undefined;
}

function msSince(start: bigint): number {
  return Number((process.hrtime.bigint() - start) / 1000n) / 1000;
}
