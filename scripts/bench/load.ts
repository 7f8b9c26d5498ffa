import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import autocannon from 'autocannon';
import { cpuSeconds } from './children.js';
import type { SignedHttpRequest } from './signer.js';

/**
 * One load row: `connections` keep-alive connections, every request signed with its own fresh
 * nonce. The requests are signed (and turned into the bytes sent) before the measured window,
 * not in it: signing each in autocannon's `setupRequest` cost the generator's core more than
 * serving it cost the bare hello server (README, "Performance"), so the hello row measured
 * the generator.
 */
export interface LoadSpec {
  /** `127.0.0.1:port` */
  endpoint: string;
  connections: number;
  /** Run for this long … */
  seconds?: number;
  /** … or until this many requests were answered. */
  amount?: number;
  /** Builds request number `i` (signing it with a fresh nonce). */
  next(i: number): SignedHttpRequest;
  /**
   * A rate (requests/s) the row will not exceed: a timed row signs `seconds × maxRate`
   * requests ahead. Should it run out, the rest are signed in the window and the result says
   * how many (`signedInWindow`).
   */
  maxRate: number;
  /** Sees every 2xx body (e.g. to keep import tokens for a later row). */
  onOk?(body: string): void;
  /** Requests sent (and not counted) before the measured run: JIT and pools warm on both sides. */
  warmup?: number;
  /** The server's pid: its CPU over the measured window is reported (its cluster workers included). */
  serverPid?: number;
}

export interface LoadResult {
  opsPerSecond: number;
  /** Latency percentiles of the 2xx answers, ms (autocannon's 1 ms resolution). */
  p50Ms: number;
  p99Ms: number;
  requests: number;
  non2xx: number;
  /** Connection errors, timeouts included. */
  errors: number;
  /** The `Code` of the first refusals seen, for the report (never a body). */
  refusalCodes: string[];
  /** Requests signed before the window (each used once). */
  presigned: number;
  /** Requests signed inside the window because the presigned ones ran out (0 when the bound held). */
  signedInWindow: number;
  /** CPU of this process (the load generator) over the measured window, in cores (1 = one core busy). */
  generatorCores: number;
  /** CPU of the server over the measured window, in cores; undefined without `serverPid`. */
  serverCores?: number;
}

/** A full collection now (what `node --expose-gc` offers as `gc()`; the bench runs through tsx, without the flag). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** At most this many requests are signed ahead of one row (memory: their bytes, 0.4–0.8 KB each). */
const MAX_PRESIGNED = 400_000;

/** Drives one row with autocannon from this process (the server is another process). */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  let i = 0;
  const signNext = () => httpRequestText(spec.next(i++), spec.endpoint);
  if (spec.warmup) {
    const warmupRequests = RequestBatch.sign(spec.warmup, signNext);
    await drive(spec, warmupRequests, { connections: Math.min(spec.connections, spec.warmup), amount: spec.warmup });
  }
  const count = spec.amount ?? Math.min(MAX_PRESIGNED, Math.ceil((spec.seconds ?? 5) * spec.maxRate));
  const batch = RequestBatch.sign(count, signNext);
  // Signing left garbage and young objects: collected now, not by the first scavenges of the window.
  collectGarbage();
  const refusalCodes = new Set<string>();
  const serverBefore = spec.serverPid === undefined ? undefined : await cpuSeconds(spec.serverPid);
  const generatorBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  const result = await drive(spec, batch, {
    connections: spec.connections,
    ...(spec.amount !== undefined ? { amount: spec.amount } : { duration: spec.seconds ?? 5 }),
    onResponse: (status: number, body: string) => {
      if (status >= 200 && status < 300) spec.onOk?.(body);
      else if (refusalCodes.size < 3) refusalCodes.add(refusalCode(status, body));
    },
  });
  const elapsedSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const generator = process.cpuUsage(generatorBefore);
  const serverAfter = spec.serverPid === undefined ? undefined : await cpuSeconds(spec.serverPid);
  const answered = result['2xx'];
  return {
    opsPerSecond: answered / (spec.amount !== undefined ? elapsedSeconds : result.duration),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    refusalCodes: [...refusalCodes],
    presigned: batch.presigned,
    signedInWindow: batch.signedInWindow,
    generatorCores: (generator.user + generator.system) / 1e6 / elapsedSeconds,
    ...(serverBefore !== undefined && serverAfter !== undefined ? { serverCores: (serverAfter - serverBefore) / elapsedSeconds } : {}),
  };
}

/**
 * One autocannon run whose every request's bytes come from `batch`. autocannon writes
 * `client.getRequestBuffer()` for each request; a connection's own method hands out the next
 * bytes of the batch instead. That skips autocannon's per-request rebuild from a `setupRequest`
 * object (the bytes already exist), which cost the generator about a fifth of its CPU
 * per request (README, "Performance"). `getRequestBuffer` is autocannon's (9.x) internal, so
 * the run checks that every request it sent came from the batch, and fails otherwise: a
 * version that stopped calling it would send one request over and over.
 */
async function drive(
  spec: LoadSpec,
  batch: RequestBatch,
  o: { connections: number; amount?: number; duration?: number; onResponse?: (status: number, body: string) => void },
): Promise<autocannon.Result> {
  const takenBefore = batch.taken;
  const result = await autocannon({
    url: `http://${spec.endpoint}`,
    connections: o.connections,
    ...(o.amount !== undefined ? { amount: o.amount } : { duration: o.duration ?? 5 }),
    timeout: 10,
    setupClient: (client) => {
      const internals = client as unknown as { getRequestBuffer?: () => Buffer };
      if (typeof internals.getRequestBuffer !== 'function') throw new Error('autocannon Client has no getRequestBuffer: the bench cannot feed it signed requests');
      internals.getRequestBuffer = () => batch.take();
    },
    // Never written (getRequestBuffer above supplies the bytes); carries onResponse.
    requests: [{ method: 'POST', path: '/', ...(o.onResponse ? { onResponse: o.onResponse } : {}) }],
  });
  const sent = result.requests.total;
  if (batch.taken - takenBefore < sent) {
    throw new Error(`autocannon sent ${sent} requests but took ${batch.taken - takenBefore} signed ones: it no longer writes getRequestBuffer()`);
  }
  return result;
}

/**
 * Requests signed ahead, as the bytes autocannon writes, each handed out once (a replayed
 * nonce would be refused). When they run out, `take` signs one on the spot — never reuses
 * one — and counts it. The bytes live in a few large Buffers (outside the JS heap, so the
 * window's garbage collections do not walk them).
 */
class RequestBatch {
  private chunk = 0;
  private inChunk = 0;
  taken = 0;
  signedInWindow = 0;

  private constructor(
    private readonly chunks: Array<{ bytes: Buffer; ends: Uint32Array }>,
    readonly presigned: number,
    private readonly signNext: () => string,
  ) {}

  static sign(count: number, signNext: () => string): RequestBatch {
    const chunks: Array<{ bytes: Buffer; ends: Uint32Array }> = [];
    for (let done = 0; done < count; ) {
      const texts = Array.from({ length: Math.min(CHUNK_REQUESTS, count - done) }, signNext);
      const ends = new Uint32Array(texts.length);
      let end = 0;
      texts.forEach((text, k) => (ends[k] = end += Buffer.byteLength(text)));
      chunks.push({ bytes: Buffer.from(texts.join('')), ends });
      done += texts.length;
    }
    return new RequestBatch(chunks, count, signNext);
  }

  take(): Buffer {
    this.taken++;
    const chunk = this.chunks[this.chunk];
    if (chunk) {
      const start = this.inChunk === 0 ? 0 : chunk.ends[this.inChunk - 1]!;
      const bytes = chunk.bytes.subarray(start, chunk.ends[this.inChunk]);
      if (++this.inChunk === chunk.ends.length) {
        this.chunks[this.chunk++] = undefined as never; // all sent: its memory can go
        this.inChunk = 0;
      }
      return bytes;
    }
    this.signedInWindow++;
    return Buffer.from(this.signNext());
  }
}

const CHUNK_REQUESTS = 8_192;

/** The HTTP/1.1 request as sent on a keep-alive connection: request line, headers, body. */
function httpRequestText(signed: SignedHttpRequest, endpoint: string): string {
  const headers: Record<string, string> = { host: endpoint, connection: 'keep-alive' };
  for (const [name, value] of Object.entries(signed.headers)) headers[name.toLowerCase()] = value;
  headers['content-length'] = String(Buffer.byteLength(signed.body));
  let text = `${signed.method} ${signed.path} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
  return `${text}\r\n${signed.body}`;
}

function refusalCode(status: number, body: string): string {
  try {
    const code = (JSON.parse(body) as { Code?: unknown }).Code;
    if (typeof code === 'string') return `${status} ${code.slice(0, 60)}`;
  } catch {
    // not JSON
  }
  return String(status);
}
