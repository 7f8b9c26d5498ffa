import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * A plain node:http handler for a path the edge routes (`/health`, `/metrics`, `/console`…).
 * It reads its own body if it has one (http/body.ts `readBody`: limits and refusals of the
 * edge) and writes its own answer; a throw or rejection is answered with Alibaba's error body
 * (a KmsError's code and status, anything else 500 InternalFailure) and logged.
 */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/** The methods one path answers; another method on a routed path is `UnsupportedHTTPMethod` (403). HEAD is served by GET. */
export type RouteMethods = Readonly<Partial<Record<'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH', RouteHandler>>>;

/** Path (exact, without the query) → its handlers. */
export type RouteTable = Readonly<Record<string, RouteMethods>>;
