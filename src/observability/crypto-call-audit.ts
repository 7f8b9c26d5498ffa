/**
 * The batched half of the audit trail (issue 17): crypto calls (domain/audit.ts
 * CRYPTO_ACTIONS, answered or refused) and every refused call (a refused mutating call has
 * no transaction to commit an event in) are told to this request observer after the answer
 * is written. Observing costs one object pushed on an array: no await, no query, no hashing.
 *
 * Every `flushEveryMs` (KMS_AUDIT_FLUSH_MS, 200 ms by default) the buffer is appended, one
 * transaction and one INSERT per chain (store/audit.ts appendAuditEvents). The loss window:
 * a process killed without a graceful stop (SIGKILL, power loss) loses the crypto-call events
 * of the calls it answered since its last completed flush — at most `flushEveryMs` plus the
 * duration of the flush in flight. A graceful stop (close) flushes what is left. Mutating
 * calls are never in this window: their events commit with the change, before the answer.
 * A store that cannot be written keeps the events buffered (up to KMS_AUDIT_BUFFER_MAX; more
 * are counted as dropped and logged) and retries at the next tick.
 */
import type { Logger } from 'pino';
import { AUDIT_OK, type AuditEvent, CRYPTO_ACTIONS, chainOf } from '../domain/audit.js';
import { appendAuditEvents } from '../store/audit.js';
import { type Db, withTransaction } from '../store/db.js';
import type { RequestObserver, RequestOutcome } from './request-outcome.js';

export interface CryptoCallAuditOptions {
  flushEveryMs: number;
  maxBuffered: number;
}

/** Whether an answered request goes into the batched trail (mutating successes are recorded in their transaction). */
export function isBatchedAuditOutcome(o: Pick<RequestOutcome, 'action' | 'code'>): boolean {
  return o.code !== undefined || (o.action !== undefined && CRYPTO_ACTIONS.has(o.action));
}

export class CryptoCallAudit {
  private buffer: AuditEvent[] = [];
  private flushing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Events not recorded because the buffer was full (the store was away for long). */
  dropped = 0;
  /** Events written so far by this process. */
  written = 0;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    private readonly options: CryptoCallAuditOptions,
  ) {}

  /** The request observer (kms.requestObservers). */
  readonly observe: RequestObserver = (o) => {
    if (this.closed || !isBatchedAuditOutcome(o)) return;
    if (this.buffer.length >= this.options.maxBuffered) {
      this.dropped++;
      return;
    }
    this.buffer.push({
      at: new Date(),
      requestId: o.requestId,
      accessKeyId: o.accessKeyId,
      sourceIp: o.sourceIp,
      action: o.action ?? '-',
      keyId: o.keyId,
      keyVersionId: o.keyVersionId,
      resultCode: o.code ?? AUDIT_OK,
      detail: { httpStatus: o.httpStatus },
    });
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.options.flushEveryMs);
  };

  /** Events observed and not yet written. */
  get pending(): number {
    return this.buffer.length;
  }

  /** Writes what is buffered now (one transaction per chain); concurrent calls share one flush. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => (this.buffer.length > 0 ? this.flush() : undefined));
    if (this.buffer.length === 0) return Promise.resolve();
    const batch = this.buffer;
    this.buffer = [];
    this.flushing = this.write(batch).finally(() => {
      this.flushing = undefined;
      // Events that arrived meanwhile, or a failed batch put back: the next tick writes them.
      if (this.buffer.length > 0 && !this.closed) this.timer ??= setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.options.flushEveryMs);
    });
    return this.flushing;
  }

  /** Stops observing and writes what is left (a graceful stop loses nothing). */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    this.closed = true;
    if (this.buffer.length > 0) this.logger.warn({ events: this.buffer.length }, 'audit: crypto-call events not written at stop');
    if (this.dropped > 0) this.logger.warn({ dropped: this.dropped }, 'audit: crypto-call events dropped (buffer full)');
  }

  private async write(batch: AuditEvent[]): Promise<void> {
    const byChain = new Map<number, AuditEvent[]>();
    for (const e of batch) {
      const chain = chainOf(e);
      const list = byChain.get(chain);
      if (list) list.push(e);
      else byChain.set(chain, [e]);
    }
    for (const [chain, events] of [...byChain].sort(([a], [b]) => a - b)) {
      try {
        await withTransaction(this.db, (tx) => appendAuditEvents(tx, events));
        this.written += events.length;
      } catch (error) {
        // Put back (oldest first) what could not be written, within the buffer's bound.
        const room = Math.max(0, this.options.maxBuffered - this.buffer.length);
        this.dropped += Math.max(0, events.length - room);
        this.buffer = [...events.slice(0, room), ...this.buffer];
        this.logger.warn({ chain, events: events.length, err: error instanceof Error ? error.message : String(error) }, 'audit: crypto-call events not written yet; retrying');
      }
    }
  }
}
