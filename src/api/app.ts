import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import express from 'express';
import { KmsError } from '../domain/errors.js';
import type { KmsConfig } from '../config.js';
import type { KmsServices } from '../kms.js';
import { allActions } from './actions/index.js';
import { bodyReadRefusal, clientErrorRefusal } from './body-errors.js';
import { HOST_ID, toErrorResponse } from './errors.js';
import { healthReport } from './health.js';
import { createRpcHandler } from './rpc.js';

/** alibaba-api.md §4.2: an 8 KiB plaintext plus a 7,000-character context overflows Node's 16 KiB default. */
export const MAX_HEADER_SIZE = 64 * 1024;

export function createApp(kms: KmsServices): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', false);
  app.get('/health', async (_req, res) => {
    const report = await healthReport(kms);
    res.status(report.status === 'ok' ? 200 : 503).json(report);
  });
  const rpc = createRpcHandler(kms, allActions);
  // The signature covers the body bytes exactly as sent: keep them raw, never inflated
  // (a Content-Encoding is answered 415, body-errors.ts).
  app.post('/', express.raw({ type: () => true, limit: '4mb', inflate: false }), rpc);
  app.get('/', rpc);
  const refuse = (error: KmsError) => (_req: express.Request, res: express.Response) => {
    const { status, body } = toErrorResponse(error, 'none', HOST_ID);
    res.status(status).json(body);
  };
  app.all('/', refuse(new KmsError('UnsupportedHTTPMethod', 'This http method is not supported.')));
  app.use(refuse(new KmsError('InvalidAction.NotFound', 'Only POST / (the Alibaba RPC endpoint) and GET /health are served.')));
  app.use((error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    const requestId = randomUUID().toUpperCase();
    const refusal = bodyReadRefusal(error);
    const { status, body, internal } = toErrorResponse(refusal?.error ?? error, requestId, HOST_ID);
    const answered = refusal?.status ?? status;
    if (internal) kms.deps.logger.error({ requestId, err: error }, 'http internal failure');
    else kms.deps.logger.info({ requestId, code: body.Code, status: answered }, 'http refused');
    // The peer may be gone (an aborted body): there is then nobody to answer.
    if (res.headersSent || res.destroyed) return;
    res.status(answered).set('x-acs-request-id', requestId).json({ ...body, HttpStatus: answered });
  });
  return app;
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
    createApp(kms),
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
  const { body } = toErrorResponse(refusal, randomUUID().toUpperCase(), HOST_ID);
  const json = JSON.stringify({ ...body, HttpStatus: status });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\n` +
      `Content-Type: application/json;charset=utf-8\r\nContent-Length: ${Buffer.byteLength(json)}\r\n` +
      `x-acs-request-id: ${body.RequestId}\r\nConnection: close\r\n\r\n${json}`,
  );
}
