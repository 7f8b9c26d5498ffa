import type { IncomingMessage } from 'node:http';
import { parseSignedRequest } from '../../src/api/signature.js';
export const f = (req: IncomingMessage) => parseSignedRequest({ method: req.method ?? 'GET', path: '/', rawQuery: '', headers: req.headers, rawBody: Buffer.alloc(0) });
