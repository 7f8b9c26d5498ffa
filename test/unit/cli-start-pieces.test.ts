import { type AddressInfo, type Socket, createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { toTable } from '../../src/cli/output.js';
import { ConnectionError, createRpcClient } from '../../src/cli/rpc-client.js';
import { clientEndpoint, describeListening, listenAddress } from '../../src/main.js';
import { pinnedBootstrapKey } from '../../src/services/bootstrap.js';

/** Issue 18 points 2 and 4: the pieces of the CLI's polish and of pinned credentials, without a server. */

describe('toTable', () => {
  it('prints a list as rows and a single record as Field/Value rows (nested names dotted, lists joined)', () => {
    expect(toTable([{ KeyId: 'key-a', State: 'Enabled' }, { KeyId: 'key-bb', State: 'Disabled' }]).split('\n')).toEqual([
      'KeyId   State',
      '------  --------',
      'key-a   Enabled',
      'key-bb  Disabled',
    ]);
    expect(toTable({ InstanceId: 'kst-1', BindVpcs: { BindVpc: [] }, ZoneIds: ['a', 'b'] }).split('\n')).toEqual([
      'Field             Value',
      '----------------  -----',
      'InstanceId        kst-1',
      'BindVpcs.BindVpc',
      'ZoneIds           a,b',
    ]);
    expect(toTable([])).toBe('(empty)');
  });

  it('escapes control characters and bidi overrides in a cell, so a description cannot fake a row', () => {
    const lines = toTable([{ KeyId: 'key-a', Description: 'line1\nkey-fake  Enabled\t\u202eevil\u0007' }, { KeyId: 'key-b', Description: 'plain' }]).split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[2]).toBe('key-a  line1\\nkey-fake  Enabled\\t\\u202eevil\\u0007');
    expect(lines[3]).toBe('key-b  plain');
  });
});

describe('pinnedBootstrapKey', () => {
  it('is undefined when neither variable is set, and the pair when both are valid', () => {
    expect(pinnedBootstrapKey({})).toBeUndefined();
    expect(pinnedBootstrapKey({ KMS_BOOTSTRAP_ACCESS_KEY_ID: 'LTAITESTRIG0000000001', KMS_BOOTSTRAP_ACCESS_KEY_SECRET: 'sixteen-chars-ok' })).toEqual({
      accessKeyId: 'LTAITESTRIG0000000001',
      accessKeySecret: 'sixteen-chars-ok',
    });
  });

  it('refuses half a pair, a malformed id and a secret under 16 characters, never echoing the secret', () => {
    expect(() => pinnedBootstrapKey({ KMS_BOOTSTRAP_ACCESS_KEY_ID: 'LTAITESTRIG0000000001' })).toThrow(/set both, or neither/);
    expect(() => pinnedBootstrapKey({ KMS_BOOTSTRAP_ACCESS_KEY_SECRET: 'sixteen-chars-ok' })).toThrow(/set both, or neither/);
    expect(() => pinnedBootstrapKey({ KMS_BOOTSTRAP_ACCESS_KEY_ID: 'AKIA0000', KMS_BOOTSTRAP_ACCESS_KEY_SECRET: 'sixteen-chars-ok' })).toThrow(/LTAI followed by 12 to 40/);
    let message = '';
    try {
      pinnedBootstrapKey({ KMS_BOOTSTRAP_ACCESS_KEY_ID: 'LTAITESTRIG0000000001', KMS_BOOTSTRAP_ACCESS_KEY_SECRET: 'fifteen-chars-x' });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('is 15 characters; a pinned secret needs at least 16');
    expect(message).not.toContain('fifteen-chars-x');
  });
});

describe('clientEndpoint', () => {
  it('names the loopback address for a wildcard listen address, the address itself otherwise', () => {
    expect(clientEndpoint('0.0.0.0', 8080)).toBe('127.0.0.1:8080');
    expect(clientEndpoint('::', 8080)).toBe('127.0.0.1:8080');
    expect(clientEndpoint('127.0.0.1', 18080)).toBe('127.0.0.1:18080');
    expect(clientEndpoint('::1', 8080)).toBe('[::1]:8080');
    expect(clientEndpoint('kms.internal', 80)).toBe('kms.internal:80');
  });

  it('is not what the start-up line calls the listen address: a rig on 0.0.0.0 says so', () => {
    const wildcard = { listening: listenAddress('0.0.0.0', 18181), endpoint: clientEndpoint('0.0.0.0', 18181) };
    expect(describeListening(wildcard)).toBe('0.0.0.0:18181 (clients on this host: 127.0.0.1:18181)');
    expect(describeListening({ listening: listenAddress('::', 8080), endpoint: clientEndpoint('::', 8080) })).toBe('[::]:8080 (clients on this host: 127.0.0.1:8080)');
    expect(describeListening({ listening: listenAddress('127.0.0.1', 8080), endpoint: clientEndpoint('127.0.0.1', 8080) })).toBe('127.0.0.1:8080');
  });
});

describe('connection errors of the RPC client', () => {
  const listening = async (onConnection: (socket: Socket) => void) => {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      onConnection(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const close = () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      });
    return { port: (server.address() as AddressInfo).port, close };
  };

  it('a refused connection names the endpoint, where it came from, and that no server is running', async () => {
    const { port, close } = await listening(() => undefined);
    await close();
    const client = createRpcClient({ endpoint: `http://127.0.0.1:${port}`, accessKeyId: 'id', accessKeySecret: 'secret', endpointSource: '--endpoint' });
    const error = await client.call('ListKeys').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).causeCode).toBe('ECONNREFUSED');
    expect((error as Error).message).toMatch(new RegExp(`^cannot reach the KMS at http://127\\.0\\.0\\.1:${port} \\(endpoint from --endpoint\\): connection refused: no server is listening there\\. Is it running\\?`));
  });

  it('a server that never answers is a timeout, and a closed connection says so', async () => {
    const silent = await listening(() => undefined);
    const slow = createRpcClient({ endpoint: `http://127.0.0.1:${silent.port}`, accessKeyId: 'id', accessKeySecret: 'secret', timeoutMs: 200 });
    const timedOut = (await slow.call('ListKeys').catch((e: unknown) => e)) as ConnectionError;
    expect(timedOut.causeCode).toBe('TimeoutError');
    expect(timedOut.message).toContain('no answer within 0.2 s');
    await silent.close();

    const hangUp = await listening((socket) => socket.destroy());
    const reset = (await createRpcClient({ endpoint: `http://127.0.0.1:${hangUp.port}`, accessKeyId: 'id', accessKeySecret: 'secret' })
      .call('ListKeys')
      .catch((e: unknown) => e)) as ConnectionError;
    expect(reset).toBeInstanceOf(ConnectionError);
    expect(reset.message).toContain('the connection was closed before an answer');
    await hangUp.close();
  });
});
