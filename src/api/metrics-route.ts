import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { KmsServices } from '../kms.js';
import { allActions } from './actions/index.js';
import type { RouteHandler } from './route.js';

/** Services whose request metrics are already observed (one observer per service, however many routes). */
const observed = new WeakSet<KmsServices>();

/**
 * `GET /metrics`: the Prometheus text of this process's registry (observability/metrics.ts).
 * Making the route also starts the request metrics (requests by action and code, latency),
 * labelled only with the actions this endpoint serves.
 *
 * Access: open from loopback (a sidecar or node agent), a bearer token (KMS_METRICS_TOKEN)
 * from anywhere else; KMS_METRICS_REQUIRE_TOKEN=true wants the token from loopback too.
 * Without a token configured, other hosts get 403; a missing or wrong token is 401.
 */
export function metricsRoute(kms: KmsServices): RouteHandler {
  if (!observed.has(kms)) {
    observed.add(kms);
    kms.requestObservers.push(kms.metrics.requestObserver(Object.keys(allActions)));
  }
  const { tokenSha256, requireToken } = kms.deps.config.metrics;
  return async (req, res) => {
    const refusal = accessRefusal(req, tokenSha256, requireToken);
    if (refusal) return refuse(res, refusal);
    const text = await kms.metrics.registry.metrics();
    res.writeHead(200, { 'content-type': kms.metrics.registry.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : text);
  };
}

type Refusal = 401 | 403;

function accessRefusal(req: IncomingMessage, tokenSha256: Buffer | undefined, requireToken: boolean): Refusal | undefined {
  if (!requireToken && isLoopback(req.socket.remoteAddress)) return undefined;
  if (!tokenSha256) return 403;
  const presented = bearerToken(req.headers.authorization);
  if (presented === undefined) return 401;
  // Compared as digests: equal lengths for timingSafeEqual, and no early exit on the token.
  return timingSafeEqual(createHash('sha256').update(presented, 'utf8').digest(), tokenSha256) ? undefined : 401;
}

function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
  return v4.startsWith('127.') || address === '::1';
}

function refuse(res: ServerResponse, status: Refusal): void {
  const body =
    status === 401
      ? { Code: 'Unauthorized', Message: '/metrics from this address needs the bearer token (KMS_METRICS_TOKEN).' }
      : { Code: 'Forbidden', Message: '/metrics is served to loopback only: set KMS_METRICS_TOKEN to scrape from other hosts.' };
  const json = JSON.stringify({ ...body, HttpStatus: status });
  const headers: Record<string, string | number> = { 'content-type': 'application/json;charset=utf-8', 'content-length': Buffer.byteLength(json) };
  if (status === 401) headers['www-authenticate'] = 'Bearer realm="metrics"';
  res.writeHead(status, headers);
  res.end(json);
}
