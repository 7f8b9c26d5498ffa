import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { KmsError } from '../domain/errors.js';
import type { KmsConfig } from '../config.js';
import type { KmsServices } from '../kms.js';
import { allActions } from './actions/index.js';
import { bodyReadRefusal, clientErrorRefusal } from './body-errors.js';
import { HOST_ID, httpStatusOf, toErrorResponse } from './errors.js';
import { healthRoute } from './health.js';
import { consoleRoutes } from './console/routes.js';
import { metricsRoute } from './metrics-route.js';
import { newRequestId, sendError } from './http/reply.js';
import { pathOf } from './http/target.js';
import type { RouteTable } from './route.js';
import { createRpcHandler } from './rpc.js';

/** alibaba-api.md §4.2: an 8 KiB plaintext plus a 7,000-character context overflows Node's 16 KiB default. */
export const MAX_HEADER_SIZE = 64 * 1024;

/**
 * Every path the edge serves and the methods each answers. Serving another path is one line
 * here, e.g. `'/metrics': { GET: metricsRoute(kms) },` with a RouteHandler (route.ts).
 */
export function routeTable(kms: KmsServices): RouteTable {
  const rpc = createRpcHandler(kms, allActions);
  return {
    // The Alibaba RPC endpoint: POST as every SDK sends it; GET with everything in the query.
    '/': { POST: rpc, GET: rpc },
    '/health': { GET: healthRoute(kms) },
    '/metrics': { GET: metricsRoute(kms) },
    ...consoleRoutes(kms),
  };
}

const unsupportedMethod = () => new KmsError('UnsupportedHTTPMethod', 'This http method is not supported.');
const unknownPath = () => new KmsError('InvalidAction.NotFound', 'This path is not served: the Alibaba RPC endpoint is POST /.');

/**
 * The edge's router over plain node:http (issue 16: express's per-request costs were a tenth
 * of the hot path): an exact path lookup, then the method. A path it does not serve is 404
 * `InvalidAction.NotFound`, another method on a served path 403 `UnsupportedHTTPMethod`; a
 * route that throws is answered with Alibaba's error body, never a bare 500 or a hang.
 */
export function createRequestListener(kms: KmsServices, routes: RouteTable = routeTable(kms)): http.RequestListener {
  const { logger } = kms.deps;
  const answerFailure = (res: http.ServerResponse, error: unknown): void => {
    const requestId = newRequestId();
    // A body that could not be read has its own status (413, 415, 400); anything not a KmsError is internal.
    const refusal = bodyReadRefusal(error);
    const answer = refusal?.error ?? (error instanceof KmsError ? error : new KmsError('InternalFailure', 'Internal Failure.', 'internal'));
    const status = refusal?.status ?? httpStatusOf(answer);
    if (answer.kind === 'internal') logger.error({ requestId, err: error }, 'http internal failure');
    else logger.info({ requestId, code: answer.code, status }, 'http refused');
    sendError(res, answer, requestId, status);
  };
  return (req, res) => {
    const path = pathOf(req.url ?? '/');
    const methods = path !== undefined && Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (!methods) return sendError(res, unknownPath());
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const handler = method !== undefined && Object.hasOwn(methods, method) ? methods[method as keyof typeof methods] : undefined;
    if (!handler) return sendError(res, unsupportedMethod());
    try {
      const pending = handler(req, res);
      if (pending) pending.catch((error: unknown) => answerFailure(res, error));
    } catch (error) {
      answerFailure(res, error);
    }
  };
}

export interface RunningServer {
  server: http.Server;
  port: number;
  close(): Promise<void>;
}

/** Idle keep-alive sockets: longer than clients and load balancers keep theirs (see below). */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

export async function startHttpServer(kms: KmsServices, host: string, port: number): Promise<RunningServer> {
  const server = http.createServer(
    { maxHeaderSize: MAX_HEADER_SIZE, ...requestDeadlines(kms.deps.config.http) },
    createRequestListener(kms),
  );
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => answerClientError(error, socket));
  // Node closes an idle keep-alive socket after 5 s; a client whose pool reuses it at that
  // moment gets ECONNRESET instead of an answer. Idle sockets live longer here than the SDKs'
  // agents keep theirs (and than the usual 60 s of load balancers), so the client closes first.
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const actualPort = (server.address() as AddressInfo).port;
  return {
    server,
    port: actualPort,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * A request whose headers or body stall is answered 408 and its connection closed once its
 * deadline passes, instead of holding a socket for Node's 300 s default. Keep-alive between
 * requests is unaffected (keepAliveTimeout governs idle sockets). Node checks the deadlines
 * every `connectionsCheckingInterval` (30 s by default, which would let a stalled request
 * outlive a short deadline by that much), so the check runs at a fraction of the shorter one.
 */
export function requestDeadlines(limits: KmsConfig['http']): Pick<http.ServerOptions, 'requestTimeout' | 'headersTimeout' | 'connectionsCheckingInterval'> {
  return {
    requestTimeout: limits.requestTimeoutMs,
    headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
    connectionsCheckingInterval: Math.max(25, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
  };
}

/** Answers what Node's parser refused with Alibaba's error body, then closes the connection. */
function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  // Nobody left to answer (the peer reset, or the socket is already closing), or a response
  // is already on its way on this socket: raw bytes would corrupt it. (`_httpMessage` is what
  // Node's own default clientError answer checks for the latter.)
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
  if (error.code === 'ECONNRESET' || !socket.writable || inFlight) {
    socket.destroy();
    return;
  }
  const { status, error: refusal } = clientErrorRefusal(error.code);
  const { body } = toErrorResponse(refusal, newRequestId(), HOST_ID);
  const json = JSON.stringify({ ...body, HttpStatus: status });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\n` +
      `Content-Type: application/json;charset=utf-8\r\nContent-Length: ${Buffer.byteLength(json)}\r\n` +
      `x-acs-request-id: ${body.RequestId}\r\nConnection: close\r\n\r\n${json}`,
  );
}
