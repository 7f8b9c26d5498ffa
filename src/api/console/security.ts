import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';

/** The session cookie's name; its Path keeps it off every other path of the edge. */
export const SESSION_COOKIE = 'kms_console';

/**
 * Headers of every console answer: no script but the console's own file, no framing, no
 * MIME sniffing, nothing cached, no referrer leaving the page.
 */
export const CONSOLE_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // same-origin, not no-referrer: under no-referrer a browser posts the forms with `Origin: null`.
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/** Writes a console answer with the security headers (and any cookie) in one go. */
export function sendConsole(
  res: ServerResponse,
  status: number,
  contentType: string,
  body: string,
  extra: Record<string, string | string[]> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { ...CONSOLE_SECURITY_HEADERS, 'content-type': contentType, 'content-length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

/** A 303 to `location` (after a form POST), with the security headers. */
export function redirect(res: ServerResponse, location: string, extra: Record<string, string | string[]> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(303, { ...CONSOLE_SECURITY_HEADERS, location, 'content-length': 0, ...extra });
  res.end();
}

/** The session id from the request's cookie, if any. */
export function sessionIdOf(req: IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Whether the cookie gets `Secure`: KMS_CONSOLE_SECURE_COOKIE, or (auto) when the browser reached us over TLS. */
export function wantsSecureCookie(req: IncomingMessage, mode: 'auto' | 'always' | 'never'): boolean {
  if (mode !== 'auto') return mode === 'always';
  if ((req.socket as Partial<TLSSocket>).encrypted === true) return true;
  const forwarded = req.headers['x-forwarded-proto'];
  return (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim().toLowerCase() === 'https';
}

export function sessionCookie(id: string, maxAgeSeconds: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${id}; Max-Age=${maxAgeSeconds}; Path=/console; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

export function clearedSessionCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; Max-Age=0; Path=/console; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

/**
 * CSRF, next to SameSite=Strict: a POST must come from a page of this very host. The Origin
 * header (every current browser sends it on a POST), else the Referer, must name the Host
 * the request was sent to; neither, or `null`, is refused.
 */
export function isSameOriginPost(req: IncomingMessage): boolean {
  const host = req.headers.host;
  if (!host) return false;
  const origin = req.headers.origin;
  const source = origin !== undefined ? origin : req.headers.referer;
  if (source === undefined || source === 'null') return false;
  try {
    const url = new URL(source);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
    // The Host header read with the same scheme, so a default port written out compares equal.
    return url.host === new URL(`${url.protocol}//${host}`).host;
  } catch {
    return false;
  }
}

/** KMS_ALLOWED_HOSTS (empty: any), as the RPC endpoint applies it: against DNS rebinding too. */
export function isAllowedHost(req: IncomingMessage, allowed: readonly string[]): boolean {
  return allowed.length === 0 || allowed.includes((req.headers.host ?? '').trim().toLowerCase());
}
