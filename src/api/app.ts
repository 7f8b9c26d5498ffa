import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { KmsError } from '../domain/errors.js';
import type { KmsServices } from '../kms.js';
import { allActions } from './actions/index.js';
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
  // The signature covers the body bytes exactly as sent: keep them raw.
  app.post('/', express.raw({ type: () => true, limit: '4mb' }), rpc);
  app.get('/', rpc);
  const refuse = (error: KmsError) => (_req: express.Request, res: express.Response) => {
    const { status, body } = toErrorResponse(error, 'none', HOST_ID);
    res.status(status).json(body);
  };
  app.all('/', refuse(new KmsError('UnsupportedHTTPMethod', 'This http method is not supported.')));
  app.use(refuse(new KmsError('InvalidAction.NotFound', 'Only POST / (the Alibaba RPC endpoint) and GET /health are served.')));  app.use((error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    const tooLarge = typeof error === 'object' && error !== null && (error as { type?: string }).type === 'entity.too.large';
    const { status, body } = toErrorResponse(error, 'none', HOST_ID);
    if (tooLarge) {
      res.status(413).json({ ...body, Code: 'RequestEntityTooLarge', Message: 'The request body is too large.', HttpStatus: 413 });
      return;
    }
    res.status(status).json(body);
  });
  return app;
}

export interface RunningServer {
  server: http.Server;
  port: number;
  close(): Promise<void>;
}

export async function startHttpServer(kms: KmsServices, host: string, port: number): Promise<RunningServer> {
  const server = http.createServer({ maxHeaderSize: MAX_HEADER_SIZE }, createApp(kms));
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
