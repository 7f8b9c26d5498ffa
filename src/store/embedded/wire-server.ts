import net from 'node:net';
import type { PGlite } from '@electric-sql/pglite';
import { ClientConnection, type ConnectionContext } from './client-connection.js';
import { RoundGate } from './round-gate.js';
import { errorResponse } from './wire-messages.js';

/** Options for {@link EmbeddedWireServer}. */
export interface WireServerOptions {
  db: PGlite;
  /** The password every client must send. */
  password: string;
  /** Most client connections at once; more are refused with SQLSTATE 53300. */
  maxConnections: number;
  /** A gate holder silent for this long is disconnected and rolled back (default 15 s). */
  idleInTransactionTimeoutMs?: number;
  /** A client not authenticated within this long is disconnected (default 10 s). */
  authenticationTimeoutMs?: number;
}

/**
 * Our Postgres wire-protocol front over PGlite (it replaces pglite-socket's server, whose
 * per-message queue interleaved connections: issue 13). Every connection authenticates, and
 * its rounds run on PGlite only while it holds the one {@link RoundGate}, so any number of
 * client connections are safe.
 */
export class EmbeddedWireServer {
  private readonly server: net.Server;
  private readonly connections = new Set<ClientConnection>();
  private readonly context: ConnectionContext;
  private readonly maxConnections: number;

  constructor(options: WireServerOptions) {
    this.context = {
      db: options.db,
      gate: new RoundGate<ClientConnection>(),
      password: options.password,
      idleInTransactionTimeoutMs: options.idleInTransactionTimeoutMs ?? 15_000,
      authenticationTimeoutMs: options.authenticationTimeoutMs ?? 10_000,
    };
    this.maxConnections = options.maxConnections;
    this.server = net.createServer((socket) => this.accept(socket));
  }

  /** Listens on `host:port` (0: any free port); resolves to the bound port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.removeListener('error', onError);
        const address = this.server.address();
        if (address === null || typeof address === 'string') reject(new Error('the embedded Postgres got no TCP address'));
        else resolve(address.port);
      });
    });
  }

  /** Connections open now and connections waiting at the gate (for tests and diagnostics). */
  stats(): { connections: number; waiting: number } {
    return { connections: this.connections.size, waiting: this.context.gate.queued };
  }

  /** Stops accepting, closes every connection, and resolves once their rounds are rolled back. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.all([...this.connections].map((connection) => connection.close()));
    // close()'s callback runs once the last socket is gone (with an error if it never listened).
    await closed;
  }

  private accept(socket: net.Socket): void {
    if (this.connections.size >= this.maxConnections) {
      socket.on('error', () => undefined);
      socket.end(errorResponse('FATAL', '53300', 'sorry, too many clients already'));
      return;
    }
    const connection = new ClientConnection(socket, this.context);
    this.connections.add(connection);
    socket.once('close', () => {
      void connection.close().finally(() => this.connections.delete(connection));
    });
  }
}
