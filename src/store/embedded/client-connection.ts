import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { PGlite } from '@electric-sql/pglite';
import type { RoundGate } from './round-gate.js';
import {
  type FrontendMessage,
  FrontendReader,
  ROUND_ENDING_TYPES,
  ReadyForQueryScanner,
  type StartupPacket,
  type TransactionStatus,
  WireProtocolError,
  authenticationCleartextPassword,
  errorResponse,
  passwordOf,
  simpleQuery,
  sync,
} from './wire-messages.js';

/** What every connection of one embedded server shares. */
export interface ConnectionContext {
  db: PGlite;
  gate: RoundGate<ClientConnection>;
  /** The local-services secret every client must present (never logged, never echoed). */
  password: string;
  /** A gate holder that sends nothing for this long is disconnected and rolled back. */
  idleInTransactionTimeoutMs: number;
  /** A client that has not authenticated within this long is disconnected. */
  authenticationTimeoutMs: number;
}

/** Largest message accepted from an authenticated client (Postgres allows 1 GiB; this service sends kilobytes). */
const MAX_MESSAGE_LENGTH = 64 * 1024 * 1024;
/** A PasswordMessage is tiny; anything bigger before authentication is refused. */
const MAX_PASSWORD_MESSAGE_LENGTH = 1024;
/** Marks the forwarded StartupMessage in the queue: a round of its own. */
const STARTUP_TYPE = '\0';

/**
 * One client connection to the embedded store: authentication (cleartext password over
 * loopback, compared in constant time), then its messages, run on PGlite only while it holds
 * the {@link RoundGate}, in batches cut after each round-ending message so the status of the
 * last ReadyForQuery tells whether the backend is idle again.
 */
export class ClientConnection {
  private readonly reader = new FrontendReader();
  private readonly scanner = new ReadyForQueryScanner();
  private phase: 'startup' | 'password' | 'ready' | 'closed' = 'startup';
  private startupPacket: Buffer | undefined;
  private user = 'postgres';
  private readonly pending: FrontendMessage[] = [];
  private pumping: Promise<void> | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private authenticationTimer: NodeJS.Timeout | undefined;
  private finishing: Promise<void> | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly context: ConnectionContext,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => void this.close());
    socket.on('close', () => void this.close());
    this.authenticationTimer = setTimeout(() => this.fail('08P01', 'authentication timed out'), context.authenticationTimeoutMs);
    this.authenticationTimer.unref();
  }

  /**
   * Closes the connection; resolves once the gate no longer holds anything of it. If it held
   * the gate, whatever it left in the backend (an open or failed transaction, a half-sent
   * round) is rolled back before the gate moves on, as a real server aborts a disconnected
   * backend's transaction. (Only a PGlite that throws on ROLLBACK itself could leave more, and
   * such a database serves nobody any more.)
   */
  close(): Promise<void> {
    if (this.finishing) return this.finishing;
    this.phase = 'closed';
    this.clearTimers();
    if (!this.socket.writableEnded) this.socket.destroy();
    this.context.gate.withdraw(this, new Error('connection closed'));
    this.finishing = (async () => {
      await this.pumping;
      if (this.context.gate.current !== this) return;
      try {
        await this.rollbackAbandonedRound();
      } finally {
        this.context.gate.release(this);
      }
    })().catch(() => undefined);
    return this.finishing;
  }

  private onData(chunk: Buffer): void {
    if (this.phase === 'closed') return;
    this.disarmIdleTimer();
    this.reader.push(chunk);
    try {
      this.readMessages();
    } catch (error) {
      if (!(error instanceof WireProtocolError)) throw error;
      this.fail('08P01', error.message);
    }
  }

  private readMessages(): void {
    for (;;) {
      if (this.phase === 'startup') {
        const packet = this.reader.nextStartupPacket();
        if (!packet) return;
        this.onStartupPacket(packet);
      } else if (this.phase === 'password') {
        const message = this.reader.nextMessage(MAX_PASSWORD_MESSAGE_LENGTH);
        if (!message) return;
        this.onPassword(message);
      } else if (this.phase === 'ready') {
        const message = this.reader.nextMessage(MAX_MESSAGE_LENGTH);
        if (!message) return;
        if (message.type === 'X') {
          void this.close();
          return;
        }
        this.pending.push(message);
        this.pump();
      } else {
        return;
      }
    }
  }

  private onStartupPacket(packet: StartupPacket): void {
    switch (packet.kind) {
      case 'ssl-request':
      case 'gssenc-request':
        // No TLS on loopback: 'N' tells the client to go on in the clear.
        this.socket.write('N');
        return;
      case 'cancel-request':
        // PGlite has no backend process to signal; the protocol expects no answer.
        void this.close();
        return;
      case 'unsupported':
        this.fail('08P01', `unsupported frontend protocol ${packet.code >> 16}.${packet.code & 0xffff}`);
        return;
      case 'startup':
        this.startupPacket = packet.bytes;
        this.user = packet.parameters.get('user') ?? this.user;
        this.phase = 'password';
        this.socket.write(authenticationCleartextPassword());
        return;
    }
  }

  private onPassword(message: FrontendMessage): void {
    // Nothing reaches PGlite before this check passes.
    if (message.type !== 'p' || !sameSecret(passwordOf(message), this.context.password) || !this.startupPacket) {
      this.fail('28P01', `password authentication failed for user "${this.user}"`);
      return;
    }
    clearTimeout(this.authenticationTimer);
    this.phase = 'ready';
    // PGlite answers the StartupMessage with AuthenticationOk, the ParameterStatus messages,
    // BackendKeyData and ReadyForQuery: exactly what the client waits for after its password.
    this.pending.push({ type: STARTUP_TYPE, bytes: this.startupPacket });
    this.startupPacket = undefined;
    this.pump();
  }

  private pump(): void {
    this.pumping ??= this.runPending().finally(() => {
      this.pumping = undefined;
      // A message that arrived while the last batch ran, after the loop looked.
      if (this.pending.length > 0 && this.phase === 'ready') this.pump();
    });
  }

  private async runPending(): Promise<void> {
    try {
      while (this.pending.length > 0 && this.phase === 'ready') {
        await this.context.gate.acquire(this);
        if (this.phase !== 'ready') return;
        const batch = this.takeBatch();
        const status = await this.execute(Buffer.concat(batch.map((m) => m.bytes)));
        if (batch[0]?.type === STARTUP_TYPE && status !== 'I') throw new Error('the embedded database refused the startup message');
        if (status === 'I') this.context.gate.release(this);
      }
      // Holding the gate with nothing to do: in a transaction, or halfway through a round.
      if (this.phase === 'ready' && this.context.gate.current === this) this.armIdleTimer();
    } catch (error) {
      if (this.phase !== 'ready') return; // withdrawn from the gate by close()
      this.fail('XX000', `embedded database failure: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** The pending messages up to and including the first round-ending one (or all of them). */
  private takeBatch(): FrontendMessage[] {
    const first = this.pending[0];
    if (first?.type === STARTUP_TYPE) return this.pending.splice(0, 1);
    const end = this.pending.findIndex((m) => ROUND_ENDING_TYPES.has(m.type) || m.type === STARTUP_TYPE);
    return this.pending.splice(0, end < 0 ? this.pending.length : end + 1);
  }

  /** Runs `message` on PGlite, streams its output to the client, returns the last ReadyForQuery status. */
  private async execute(message: Buffer): Promise<TransactionStatus | undefined> {
    let scanError: unknown;
    await this.context.db.runExclusive(() =>
      this.context.db.execProtocolRawStream(message, {
        onRawData: (data) => {
          // A copy: PGlite reuses the memory behind `data`.
          const bytes = Buffer.from(data);
          try {
            this.scanner.scan(bytes);
          } catch (error) {
            scanError ??= error;
          }
          if (!this.socket.destroyed) this.socket.write(bytes);
        },
      }),
    );
    if (scanError) throw scanError;
    return this.scanner.takeStatus();
  }

  /**
   * Leaves the backend idle for the next holder. ROLLBACK first ends an explicit transaction or
   * the implicit one of a half-sent extended round (Postgres turns it into an abort); Sync then
   * clears an error's skip-until-Sync state, in which the ROLLBACK was ignored; if the backend is
   * still not idle after that (a failed transaction block), a second ROLLBACK ends it.
   */
  private async rollbackAbandonedRound(): Promise<void> {
    const scanner = new ReadyForQueryScanner();
    const run = async (message: Buffer) => {
      await this.context.db.runExclusive(() => this.context.db.execProtocolRawStream(message, { onRawData: (data) => scanner.scan(data) }));
      return scanner.takeStatus();
    };
    if ((await run(Buffer.concat([simpleQuery('ROLLBACK'), sync()]))) !== 'I') await run(simpleQuery('ROLLBACK'));
  }

  /** Sends a FATAL ErrorResponse and closes. */
  private fail(sqlState: string, message: string): void {
    if (this.phase === 'closed') return;
    if (!this.socket.destroyed) {
      this.socket.end(errorResponse('FATAL', sqlState, message));
      // end() lets the error reach the client; a client that never reads must not keep the socket.
      setTimeout(() => this.socket.destroy(), 1_000).unref();
    }
    void this.close();
  }

  private armIdleTimer(): void {
    this.disarmIdleTimer();
    this.idleTimer = setTimeout(
      () => this.fail('25P03', 'terminating connection due to idle-in-transaction timeout (the embedded store runs one transaction at a time)'),
      this.context.idleInTransactionTimeoutMs,
    );
    this.idleTimer.unref();
  }

  private disarmIdleTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private clearTimers(): void {
    this.disarmIdleTimer();
    clearTimeout(this.authenticationTimer);
  }
}

/** Constant-time comparison, whatever the lengths (digests are compared, not the secrets). */
function sameSecret(given: Buffer, expected: string): boolean {
  const digest = (value: Buffer | string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected)) && given.length > 0;
}
