/**
 * The few pieces of the PostgreSQL v3 wire protocol the embedded store's front needs
 * (https://www.postgresql.org/docs/current/protocol-message-formats.html): framing of what a
 * client sends, the messages the front answers by itself, and a scanner that finds
 * ReadyForQuery in what PGlite sends back.
 */

/** StartupMessage protocol version 3.0. */
export const PROTOCOL_VERSION_3 = 196_608;
export const SSL_REQUEST_CODE = 80_877_103;
export const GSSENC_REQUEST_CODE = 80_877_104;
export const CANCEL_REQUEST_CODE = 80_877_102;
/** Postgres's own cap on a startup packet (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET_LENGTH = 10_000;

/** A client broke the protocol: the front answers with an error and closes. */
export class WireProtocolError extends Error {}

/** What a client may send before its StartupMessage is accepted (they carry no type byte). */
export type StartupPacket =
  | { kind: 'ssl-request' }
  | { kind: 'gssenc-request' }
  | { kind: 'cancel-request' }
  | { kind: 'startup'; bytes: Buffer; parameters: Map<string, string> }
  | { kind: 'unsupported'; code: number };

/** A typed frontend message: the whole message (type byte, length, body), as PGlite wants it. */
export interface FrontendMessage {
  type: string;
  bytes: Buffer;
}

/**
 * Reassembles a client's byte stream into messages. A TCP chunk may hold half a message or
 * several; nothing is handed on before it is complete.
 */
export class FrontendReader {
  private buffer: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
  }

  /** The next untyped startup-phase packet, or undefined until one is complete. */
  nextStartupPacket(): StartupPacket | undefined {
    if (this.buffer.length < 8) return undefined;
    const length = this.buffer.readInt32BE(0);
    if (length < 8 || length > MAX_STARTUP_PACKET_LENGTH) throw new WireProtocolError('invalid startup packet length');
    if (this.buffer.length < length) return undefined;
    const bytes = this.take(length);
    const code = bytes.readInt32BE(4);
    if (code === SSL_REQUEST_CODE) return { kind: 'ssl-request' };
    if (code === GSSENC_REQUEST_CODE) return { kind: 'gssenc-request' };
    if (code === CANCEL_REQUEST_CODE) return { kind: 'cancel-request' };
    if (code !== PROTOCOL_VERSION_3) return { kind: 'unsupported', code };
    return { kind: 'startup', bytes, parameters: startupParameters(bytes) };
  }

  /** The next typed message, or undefined until one is complete; refuses one over `maxLength`. */
  nextMessage(maxLength: number): FrontendMessage | undefined {
    if (this.buffer.length < 5) return undefined;
    const length = this.buffer.readInt32BE(1);
    if (length < 4 || length + 1 > maxLength) throw new WireProtocolError('invalid message length');
    if (this.buffer.length < length + 1) return undefined;
    const bytes = this.take(length + 1);
    return { type: String.fromCharCode(bytes[0] ?? 0), bytes };
  }

  private take(length: number): Buffer {
    // A copy: the message outlives this buffer, which the next chunk replaces.
    const bytes = Buffer.from(this.buffer.subarray(0, length));
    this.buffer = this.buffer.subarray(length);
    return bytes;
  }
}

function startupParameters(bytes: Buffer): Map<string, string> {
  const fields = bytes.subarray(8).toString('utf8').split('\0');
  const parameters = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length && fields[i] !== ''; i += 2) parameters.set(fields[i]!, fields[i + 1]!);
  return parameters;
}

/** The password of a PasswordMessage ('p'): its body up to the terminating NUL. */
export function passwordOf(message: FrontendMessage): Buffer {
  const body = message.bytes.subarray(5);
  return body.at(-1) === 0 ? body.subarray(0, -1) : body;
}

function typed(type: string, body: Buffer): Buffer {
  const message = Buffer.alloc(5 + body.length);
  message.write(type, 0, 'latin1');
  message.writeInt32BE(4 + body.length, 1);
  body.copy(message, 5);
  return message;
}

/** AuthenticationCleartextPassword. */
export function authenticationCleartextPassword(): Buffer {
  const body = Buffer.alloc(4);
  body.writeInt32BE(3, 0);
  return typed('R', body);
}

/** ErrorResponse with severity, SQLSTATE and message (what `pg` surfaces as `code`/`message`). */
export function errorResponse(severity: 'ERROR' | 'FATAL', sqlState: string, message: string): Buffer {
  const field = (code: string, value: string) => Buffer.from(`${code}${value}\0`, 'utf8');
  return typed('E', Buffer.concat([field('S', severity), field('V', severity), field('C', sqlState), field('M', message), Buffer.from([0])]));
}

/** A simple Query ('Q'). */
export function simpleQuery(sql: string): Buffer {
  return typed('Q', Buffer.from(`${sql}\0`, 'utf8'));
}

/** Sync ('S'): ends an extended-protocol round, clearing an error's skip-until-Sync state. */
export function sync(): Buffer {
  return typed('S', Buffer.alloc(0));
}

/**
 * The messages after which the backend sends ReadyForQuery: Sync (end of an extended-protocol
 * round), Query and FunctionCall. A batch of a client's messages is cut after one of them, so
 * the last ReadyForQuery of its output describes the backend after the whole batch.
 */
export const ROUND_ENDING_TYPES: ReadonlySet<string> = new Set(['S', 'Q', 'F']);

/** ReadyForQuery's transaction status: idle, in a transaction block, in a failed one. */
export type TransactionStatus = 'I' | 'T' | 'E';

/**
 * Follows PGlite's output message by message (type byte, int32 length, body), across chunk
 * boundaries, and remembers the status byte of the last ReadyForQuery ('Z'). Scanning by
 * message, never by searching for a 'Z' byte, which may occur inside any row's data.
 */
export class ReadyForQueryScanner {
  private readonly header = Buffer.alloc(5);
  private headerFilled = 0;
  private type = 0;
  private bodyLeft = 0;
  private bodyRead = 0;
  private status: TransactionStatus | undefined;

  scan(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.bodyLeft > 0) {
        if (this.type === 0x5a /* Z */ && this.bodyRead === 0) this.status = toStatus(chunk[i]);
        const take = Math.min(this.bodyLeft, chunk.length - i);
        this.bodyLeft -= take;
        this.bodyRead += take;
        i += take;
        continue;
      }
      this.header[this.headerFilled++] = chunk[i++]!;
      if (this.headerFilled === 5) {
        this.headerFilled = 0;
        this.type = this.header[0]!;
        const length = this.header.readInt32BE(1);
        if (length < 4) throw new WireProtocolError('invalid backend message length');
        this.bodyLeft = length - 4;
        this.bodyRead = 0;
      }
    }
  }

  /** The status of the last ReadyForQuery scanned since the previous call, if any. */
  takeStatus(): TransactionStatus | undefined {
    const status = this.status;
    this.status = undefined;
    return status;
  }
}

function toStatus(byte: number | undefined): TransactionStatus {
  if (byte === 0x49) return 'I';
  if (byte === 0x54) return 'T';
  if (byte === 0x45) return 'E';
  throw new WireProtocolError('invalid ReadyForQuery status');
}
