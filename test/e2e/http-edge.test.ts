import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestDeadlines } from '../../src/api/app.js';
import { loadConfig } from '../../src/config.js';
import { openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 13, the HTTP edge: stalled requests are dropped at a configured deadline, and every
 * failure of the body reader is an Alibaba error body with a 4xx, never a 500. Requests are
 * written on raw sockets, as a broken or hostile client would.
 */
let server: TestServer;

beforeAll(async () => {
  server = await startServer({ env: { KMS_REQUEST_TIMEOUT_MS: '400', KMS_HEADERS_TIMEOUT_MS: '300' } });
});

afterAll(async () => {
  await server?.stop();
});

interface RawExchange {
  /** Everything the server sent before closing. */
  received: string;
  /** Whether the server closed the connection before the deadline. */
  closed: boolean;
}

/** Writes `chunks` on a fresh socket (keeping it open unless `end`) and waits, bounded, for the server to close it. */
async function rawExchange(chunks: Array<string | Buffer>, options: { end?: boolean; deadlineMs?: number } = {}): Promise<RawExchange> {
  const socket = net.connect(server.port, '127.0.0.1');
  let received = '';
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<boolean>((resolve) => {
    socket.once('close', () => resolve(true));
    setTimeout(() => resolve(false), options.deadlineMs ?? 10_000).unref();
  });
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  for (const chunk of chunks) socket.write(chunk);
  if (options.end) socket.end();
  const result = { received, closed: await closed };
  result.received = received;
  socket.destroy();
  return result;
}

const statusOf = (received: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1]);
const bodyOf = (received: string) => JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
const head = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`;

describe('stalled requests', () => {
  it('a body that stops half-way is dropped at the request deadline, not after minutes', async () => {
    const started = Date.now();
    const exchange = await rawExchange([
      head(['POST /?Action=ListKeys HTTP/1.1', 'Host: kms', 'Content-Type: application/x-www-form-urlencoded', 'Content-Length: 100']),
      'PageSize=1&Pag',
    ]);
    expect(exchange.closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(10_000);
    // Answered 408 with Alibaba's body before the close; never a 500.
    expect(statusOf(exchange.received)).toBe(408);
    expect(bodyOf(exchange.received)).toMatchObject({ Code: 'RequestTimeout', HttpStatus: 408 });
  });

  it('headers that never finish are dropped too', async () => {
    const exchange = await rawExchange(['POST / HTTP/1.1\r\nHost: kms\r\nX-Slow: ']);
    expect(exchange.closed).toBe(true);
  });

  it('keep-alive still serves the SDK: many calls on one server with the short deadlines', async () => {
    const client = openApiClient(server.endpoint, server.admin);
    for (let i = 0; i < 5; i++) expect((await client('ListKeys', {})).RequestId).toBeTruthy();
  });

  it('an idle keep-alive connection outlives the request deadline: its next request is served', async () => {
    const socket = net.connect(server.port, '127.0.0.1');
    socket.on('error', () => undefined);
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const answers = async (count: number) => {
      const deadline = Date.now() + 10_000;
      // Responses follow one another with no separator: a body ends where the next status line starts.
      const statusLines = () => received.match(/HTTP\/1\.1 \d{3}/g) ?? [];
      while (statusLines().length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      return statusLines().map((line) => Number(line.slice(9)));
    };
    const request = head(['POST / HTTP/1.1', 'Host: kms', 'Content-Type: application/x-www-form-urlencoded', 'Content-Length: 0']);
    socket.write(request);
    expect(await answers(1)).toHaveLength(1);
    // Idle for longer than the 400 ms request deadline, well within the 5 s keep-alive.
    await new Promise((r) => setTimeout(r, 700));
    socket.write(request);
    const statuses = await answers(2);
    socket.destroy();
    // Both are the RPC endpoint's own refusal of an unsigned request (4xx, not 408), on one connection.
    expect(statuses).toHaveLength(2);
    expect(statuses[1]).toBe(statuses[0]);
    expect(statuses[1]).not.toBe(408);
  });

  it('the headers deadline never exceeds the request deadline, and the checks run often enough to honour it', () => {
    const http = loadConfig({ KMS_REQUEST_TIMEOUT_MS: '300' }).http;
    expect(http).toEqual({ requestTimeoutMs: 300, headersTimeoutMs: 300 });
    expect(requestDeadlines(http)).toEqual({ requestTimeout: 300, headersTimeout: 300, connectionsCheckingInterval: 75 });
    expect(loadConfig({}).http).toEqual({ requestTimeoutMs: 30_000, headersTimeoutMs: 20_000 });
    expect(() => loadConfig({ KMS_REQUEST_TIMEOUT_MS: '1000', KMS_HEADERS_TIMEOUT_MS: '2000' })).toThrow(/KMS_HEADERS_TIMEOUT_MS/);
  });
});

describe('failures of the body reader are Alibaba 4xx answers', () => {
  const post = (headers: string[], body: Buffer | string) =>
    rawExchange([head(['POST / HTTP/1.1', 'Host: kms', 'Connection: close', `Content-Length: ${Buffer.byteLength(body)}`, ...headers]), body]);

  it('Content-Encoding: gzip with a garbage body → 415 InvalidParameter', async () => {
    const exchange = await post(['Content-Type: application/x-www-form-urlencoded', 'Content-Encoding: gzip'], Buffer.from('not gzip at all'));
    expect(statusOf(exchange.received)).toBe(415);
    const body = bodyOf(exchange.received);
    expect([body.Code, body.HttpStatus]).toEqual(['InvalidParameter', 415]);
    expect(body.Message).toContain('Content-Encoding');
    expect(body.RequestId).toMatch(/^[0-9A-F-]{36}$/);
  });

  it('an unknown Content-Encoding → 415', async () => {
    const exchange = await post(['Content-Encoding: x-custom'], 'Action=ListKeys');
    expect([statusOf(exchange.received), bodyOf(exchange.received).Code]).toEqual([415, 'InvalidParameter']);
  });

  it('an unknown charset is not a server failure', async () => {
    const exchange = await post(['Content-Type: application/x-www-form-urlencoded; charset=no-such-charset'], 'Action=ListKeys');
    const status = statusOf(exchange.received);
    expect(status).toBeGreaterThanOrEqual(400);
    expect(status).toBeLessThan(500);
  });

  it('a body shorter than its Content-Length (the client half-closes) → 400 InvalidParameter', async () => {
    const exchange = await rawExchange(
      [head(['POST / HTTP/1.1', 'Host: kms', 'Content-Type: application/x-www-form-urlencoded', 'Content-Length: 50']), 'Action=ListKeys'],
      { end: true },
    );
    expect(statusOf(exchange.received)).toBe(400);
    expect(bodyOf(exchange.received).Code).toBe('InvalidParameter');
  });

  it('an aborted body is logged as a 400 refusal, never as an internal failure', async () => {
    const before = server.logs.length;
    const socket = net.connect(server.port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    // `Expect: 100-continue`: Node answers 100 as it hands the request to express, so the
    // body reader is listening when the client aborts.
    const continued = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.write(head(['POST / HTTP/1.1', 'Host: kms', 'Content-Type: application/x-www-form-urlencoded', 'Content-Length: 1000', 'Expect: 100-continue']));
    await continued;
    socket.write('Action=ListKeys&');
    socket.destroy();
    const deadline = Date.now() + 10_000;
    const refusal = () => server.logs.slice(before).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'http refused');
    while (!refusal() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(refusal()).toMatchObject({ code: 'InvalidParameter', status: 400 });
    expect(server.logs.slice(before).join('\n')).not.toContain('internal failure');
  });

  it('a body over 4 MiB → 413 RequestEntityTooLarge', async () => {
    const exchange = await post(['Content-Type: application/x-www-form-urlencoded'], Buffer.alloc(4 * 1024 * 1024 + 1, 'a'));
    expect([statusOf(exchange.received), bodyOf(exchange.received).Code]).toEqual([413, 'RequestEntityTooLarge']);
  });
});

describe('the router (node:http, no framework)', () => {
  const ask = async (method: string, path: string) => {
    const response = await fetch(`http://${server.endpoint}${path}`, { method });
    return { status: response.status, headers: response.headers, body: method === 'HEAD' ? {} : ((await response.json()) as Record<string, unknown>) };
  };

  it('another path is 404 InvalidAction.NotFound and another method on / is 403, both Alibaba bodies with a request id header', async () => {
    for (const [method, path, status, code] of [
      ['GET', '/admin', 404, 'InvalidAction.NotFound'],
      ['POST', '/health/deep', 404, 'InvalidAction.NotFound'],
      ['DELETE', '/', 403, 'UnsupportedHTTPMethod'],
      ['PUT', '/health', 403, 'UnsupportedHTTPMethod'],
    ] as const) {
      const answer = await ask(method, path);
      expect([answer.status, answer.body.Code, answer.body.HttpStatus]).toEqual([status, code, status]);
      expect(answer.headers.get('content-type')).toBe('application/json;charset=utf-8');
      expect(answer.headers.get('x-acs-request-id')).toBe(answer.body.RequestId);
      expect(answer.body.RequestId).toMatch(/^[0-9A-F-]{36}$/);
    }
  });

  it('/health answers GET, HEAD and a trailing slash; the RPC endpoint answers GET too', async () => {
    expect((await ask('GET', '/health/')).body.status).toBe('ok');
    expect((await ask('HEAD', '/health')).status).toBe(200);
    const viaGet = await ask('GET', '/?Action=ListKeys');
    expect([viaGet.status, viaGet.body.Code]).toEqual([400, 'MissingParameter']);
  });

  it('a route that throws is answered 500 InternalFailure with the request id, never a hang, and logged as an internal failure', async () => {
    const { createRequestListener } = await import('../../src/api/app.js');
    const { KmsError } = await import('../../src/domain/errors.js');
    const http = await import('node:http');
    const listener = createRequestListener(server.kms, {
      '/boom': { GET: () => Promise.reject(new Error('secret detail')) },
      '/refuse': { GET: () => { throw new KmsError('Forbidden.NoPermission', 'no.'); } },
    });
    const local = http.createServer(listener);
    await new Promise<void>((resolve) => local.listen(0, '127.0.0.1', resolve));
    const port = (local.address() as import('node:net').AddressInfo).port;
    try {
      const boom = await fetch(`http://127.0.0.1:${port}/boom`);
      const body = (await boom.json()) as Record<string, unknown>;
      expect([boom.status, body.Code]).toEqual([500, 'InternalFailure']);
      expect(JSON.stringify(body)).not.toContain('secret detail');
      const refused = await fetch(`http://127.0.0.1:${port}/refuse`);
      expect([refused.status, ((await refused.json()) as Record<string, unknown>).Code]).toEqual([403, 'Forbidden.NoPermission']);
      expect(server.logs.some((l) => l.includes('http internal failure') && l.includes(String(body.RequestId)))).toBe(true);
    } finally {
      local.closeAllConnections();
      await new Promise((resolve) => local.close(resolve));
    }
  });
});
