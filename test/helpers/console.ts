import http from 'node:http';
import type { Credentials } from './server.js';

export interface ConsoleAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One plain HTTP request to the test server (node:http, so Origin and Cookie are sent as given). */
export function consoleRequest(
  endpoint: string,
  method: 'GET' | 'POST',
  path: string,
  options: { headers?: Record<string, string>; form?: Record<string, string> } = {},
): Promise<ConsoleAnswer> {
  const [host, port] = endpoint.split(':');
  const body = options.form ? new URLSearchParams(options.form).toString() : undefined;
  const headers: Record<string, string> = { ...options.headers };
  if (body !== undefined) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Signs in through the form POST as a browser of this origin would; the answer (303 and the cookie, or a refusal). */
export function consoleSignIn(endpoint: string, credentials: Credentials, headers: Record<string, string> = {}): Promise<ConsoleAnswer> {
  return consoleRequest(endpoint, 'POST', '/console/sign-in', {
    headers: { origin: `http://${endpoint}`, ...headers },
    form: { accessKeyId: credentials.accessKeyId, accessKeySecret: credentials.accessKeySecret },
  });
}

/** `name=value` of the session cookie a sign-in set (for a Cookie header). */
export function sessionCookieOf(answer: ConsoleAnswer): string {
  const cookie = answer.headers['set-cookie']?.find((c) => c.startsWith('kms_console='));
  if (!cookie) throw new Error(`no session cookie in the answer (status ${answer.status})`);
  return cookie.split(';')[0]!;
}
