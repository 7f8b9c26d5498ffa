/**
 * Child process of `npm run bench`: the baselines' servers. `node` is a bare node:http server
 * that reads the whole body and answers a small JSON document; `express` does the same through
 * express 5 (`express.raw` + `res.json`). Prints `listening <port>` once it accepts connections.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const mode = process.argv[2];

const answer = () => JSON.stringify({ RequestId: 'hello', Hello: 'world' });

async function main(): Promise<void> {
  let server: http.Server;
  if (mode === 'node') {
    server = http.createServer((req, res) => {
      req.on('data', () => undefined);
      req.on('end', () => {
        const body = answer();
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
    });
  } else if (mode === 'express') {
    // Only while express is a dependency: the bench skips this row when it is gone.
    const { default: express } = (await import('express')) as { default: typeof import('express') };
    const app = express();
    app.use(express.raw({ type: () => true, limit: '1mb' }));
    app.all('/', (_req, res) => {
      res.json({ RequestId: 'hello', Hello: 'world' });
    });
    server = http.createServer(app);
  } else {
    throw new Error('usage: hello-server.ts node|express');
  }
  server.keepAliveTimeout = 65_000;
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

await main();
