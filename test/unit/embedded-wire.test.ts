import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RoundGate } from '../../src/store/embedded/round-gate.js';
import {
  FrontendReader,
  PROTOCOL_VERSION_3,
  ReadyForQueryScanner,
  SSL_REQUEST_CODE,
  WireProtocolError,
  passwordOf,
} from '../../src/store/embedded/wire-messages.js';

/** A typed message (frontend and backend messages share the framing). */
function backendMessage(type: string, body: Buffer): Buffer {
  const message = Buffer.alloc(5 + body.length);
  message.write(type, 0, 'latin1');
  message.writeInt32BE(4 + body.length, 1);
  body.copy(message, 5);
  return message;
}

/** Splits `bytes` at the given cut points (sorted, deduplicated, inside the buffer). */
function chunked(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const point of [...points, bytes.length]) {
    chunks.push(bytes.subarray(start, point));
    start = point;
  }
  return chunks;
}

describe('ReadyForQueryScanner', () => {
  // A DataRow full of 'Z' and 'I' bytes: a scanner that searched bytes would be fooled by it.
  const decoy = backendMessage('D', Buffer.from('ZZZZ\0\0\0\x05ITTTE', 'latin1'));
  const output = Buffer.concat([
    backendMessage('1', Buffer.alloc(0)),
    decoy,
    backendMessage('Z', Buffer.from('T')),
    decoy,
    backendMessage('C', Buffer.from('SELECT 1\0')),
    backendMessage('Z', Buffer.from('I')),
  ]);

  it('finds the last ReadyForQuery status message by message, however the output is chunked', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 12 }), (cuts) => {
        const scanner = new ReadyForQueryScanner();
        for (const chunk of chunked(output, cuts)) scanner.scan(chunk);
        expect(scanner.takeStatus()).toBe('I');
        expect(scanner.takeStatus()).toBeUndefined();
      }),
    );
  });

  it('reports a transaction left open (T) and a failed one (E)', () => {
    for (const status of ['T', 'E'] as const) {
      const scanner = new ReadyForQueryScanner();
      scanner.scan(Buffer.concat([decoy, backendMessage('Z', Buffer.from(status))]));
      expect(scanner.takeStatus()).toBe(status);
    }
  });

  it('sees no status in output without ReadyForQuery (a round still open)', () => {
    const scanner = new ReadyForQueryScanner();
    scanner.scan(Buffer.concat([backendMessage('1', Buffer.alloc(0)), decoy]));
    expect(scanner.takeStatus()).toBeUndefined();
  });
});

describe('FrontendReader', () => {
  const startup = (() => {
    const params = Buffer.from('user\0postgres\0database\0postgres\0\0');
    const packet = Buffer.alloc(8 + params.length);
    packet.writeInt32BE(packet.length, 0);
    packet.writeInt32BE(PROTOCOL_VERSION_3, 4);
    params.copy(packet, 8);
    return packet;
  })();
  const ssl = Buffer.alloc(8);
  ssl.writeInt32BE(8, 0);
  ssl.writeInt32BE(SSL_REQUEST_CODE, 4);
  const password = backendMessage('p', Buffer.from('s3cret\0'));
  const parse = backendMessage('P', Buffer.from('\0SELECT 1\0\0\0'));
  const sync = backendMessage('S', Buffer.alloc(0));

  it('hands on only whole messages, whatever the TCP chunks', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 10 }), (cuts) => {
        const reader = new FrontendReader();
        const seen: string[] = [];
        let phase: 'startup' | 'typed' = 'startup';
        for (const chunk of chunked(Buffer.concat([ssl, startup, password, parse, sync]), cuts)) {
          reader.push(chunk);
          for (;;) {
            if (phase === 'startup') {
              const packet = reader.nextStartupPacket();
              if (!packet) break;
              seen.push(packet.kind);
              if (packet.kind === 'startup') {
                expect(packet.parameters.get('user')).toBe('postgres');
                phase = 'typed';
              }
            } else {
              const message = reader.nextMessage(1024);
              if (!message) break;
              seen.push(message.type);
              if (message.type === 'p') expect(passwordOf(message).toString()).toBe('s3cret');
            }
          }
        }
        expect(seen).toEqual(['ssl-request', 'startup', 'p', 'P', 'S']);
      }),
    );
  });

  it('refuses a message longer than the limit before reading it', () => {
    const reader = new FrontendReader();
    reader.push(Buffer.from([0x70, 0x00, 0x10, 0x00, 0x00]));
    expect(() => reader.nextMessage(1024)).toThrow(WireProtocolError);
  });
});

describe('RoundGate', () => {
  it('admits one holder at a time, the others first come first served; a withdrawn waiter is refused', async () => {
    const gate = new RoundGate<string>();
    const admitted: string[] = [];
    await gate.acquire('a');
    await gate.acquire('a'); // the holder again: at once
    const b = gate.acquire('b').then(() => admitted.push('b'));
    const c = gate.acquire('c').then(
      () => admitted.push('c'),
      () => admitted.push('c refused'),
    );
    const d = gate.acquire('d').then(() => admitted.push('d'));
    expect(gate.queued).toBe(3);
    gate.release('b'); // not the holder: nothing happens
    expect(gate.current).toBe('a');
    gate.withdraw('c', new Error('gone'));
    gate.release('a');
    await b;
    expect(gate.current).toBe('b');
    gate.release('b');
    await Promise.all([c, d]);
    expect(admitted).toEqual(['c refused', 'b', 'd']);
    expect(gate.current).toBe('d');
  });
});
