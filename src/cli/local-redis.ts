import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

/**
 * A private redis-server for the quickstart when no REDIS_URL is given: a child process bound to
 * 127.0.0.1 with its append-only file under the data dir, so queued jobs survive a restart.
 */

/** Options for {@link startPrivateRedis}. */
export interface PrivateRedisOptions {
  /** The service data dir; Redis keeps its files in `<dataDir>/redis`. */
  dataDir: string;
  /**
   * TCP port. When omitted, 6380 is tried first (6379 is usually a system Redis) and then the
   * next few; when given, only that port is used.
   */
  port?: number;
  /** The redis-server binary (default: `redis-server` from PATH). */
  command?: string;
  /** How long to wait for the first PONG (default 15 s). */
  startTimeoutMs?: number;
}

/** A running private Redis. */
export interface PrivateRedis {
  /** `redis://127.0.0.1:PORT`. */
  url: string;
  /** Stops the server gracefully (SIGTERM: Redis flushes its AOF) and waits for it to exit. */
  stop(): Promise<void>;
}

/** Default port: one above the standard one, which a system Redis usually holds. */
export const DEFAULT_PRIVATE_REDIS_PORT = 6380;
const PORT_ATTEMPTS = 10;
const HOST = '127.0.0.1';

/**
 * Spawns `redis-server` on 127.0.0.1 with AOF persistence in `<dataDir>/redis`, waits until it
 * answers PING and checks (via `INFO server`) that the answer came from the child we started, not
 * from another Redis already on that port.
 *
 * @throws Error with install instructions when `redis-server` is not installed.
 */
export async function startPrivateRedis(opts: PrivateRedisOptions): Promise<PrivateRedis> {
  const command = opts.command ?? 'redis-server';
  const dir = path.resolve(opts.dataDir, 'redis');
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });

  const candidates =
    opts.port === undefined
      ? Array.from({ length: PORT_ATTEMPTS }, (_, i) => DEFAULT_PRIVATE_REDIS_PORT + i)
      : [opts.port];
  let lastReason = '';
  for (const port of candidates) {
    if (!(await isPortFree(port))) {
      lastReason = `port ${port} is in use`;
      continue;
    }
    const attempt = await tryStart(command, dir, port, opts.startTimeoutMs ?? 15_000);
    if (attempt.ok) return attempt.redis;
    lastReason = attempt.reason;
    // Another process grabbed the port between the probe and the bind: try the next one.
    if (!attempt.addressInUse) break;
  }
  throw new Error(`Cannot start a private redis-server: ${lastReason}`);
}

type Attempt = { ok: true; redis: PrivateRedis } | { ok: false; reason: string; addressInUse: boolean };

async function tryStart(command: string, dir: string, port: number, timeoutMs: number): Promise<Attempt> {
  const args = [
    '--port', String(port),
    '--bind', HOST,
    '--dir', dir,
    '--appendonly', 'yes',
    // No RDB snapshots: the AOF is the persistence, and a snapshot fork doubles memory.
    '--save', '',
    '--daemonize', 'no',
    '--protected-mode', 'yes',
    '--loglevel', 'warning',
    '--logfile', '',
  ];
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });

  // Keep the tail of the output for error messages; reading it also keeps the pipe from filling.
  let output = '';
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);

  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let spawnError: Error | undefined;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve();
    });
    child.once('error', (error) => {
      spawnError = error;
      resolve();
    });
  });

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (spawnError) {
      if (errnoCode(spawnError) === 'ENOENT') {
        throw new Error(
          `${command} was not found on PATH. Install Redis (Debian/Ubuntu: \`apt-get install redis-server\`, ` +
            'or run `bash scripts/setup.sh`), or set REDIS_URL to a Redis server you already run.',
        );
      }
      return { ok: false, reason: `cannot run ${command}: ${spawnError.message}`, addressInUse: false };
    }
    if (exited) {
      const tail = output.trim().split('\n').slice(-5).join('\n');
      return {
        ok: false,
        reason: `${command} exited (${exited.signal ?? `code ${String(exited.code)}`}) on port ${port}: ${tail || 'no output'}`,
        addressInUse: /address already in use/i.test(output),
      };
    }
    if (Date.now() > deadline) {
      await terminate(child, exitPromise, () => exited !== undefined);
      return { ok: false, reason: `no PING answer on port ${port} within ${timeoutMs} ms`, addressInUse: false };
    }
    const pong = await redisCommand(port, 'PING').catch(() => undefined);
    if (pong === '+PONG') {
      const info = await redisCommand(port, 'INFO server').catch(() => '');
      const pid = /process_id:(\d+)/.exec(info)?.[1];
      if (pid === String(child.pid)) break;
      // Someone else's Redis answered: ours will fail to bind and exit; report it as in use.
      await terminate(child, exitPromise, () => exited !== undefined);
      return { ok: false, reason: `port ${port} is held by another Redis`, addressInUse: true };
    }
    await Promise.race([exitPromise, new Promise((resolve) => setTimeout(resolve, 50))]);
  }

  // A quickstart that exits without calling stop() must not leave an orphan Redis behind.
  const killOnExit = (): void => {
    if (!exited) child.kill('SIGTERM');
  };
  process.once('exit', killOnExit);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      process.removeListener('exit', killOnExit);
      await terminate(child, exitPromise, () => exited !== undefined);
    })();
    return stopped;
  };
  return { ok: true, redis: { url: `redis://${HOST}:${port}`, stop } };
}

/** SIGTERM (Redis shuts down gracefully, fsyncing its AOF), then SIGKILL if it hangs. */
async function terminate(child: ChildProcess, exitPromise: Promise<void>, hasExited: () => boolean): Promise<void> {
  if (hasExited() || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timedOut = await Promise.race([
    exitPromise.then(() => false),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 10_000).unref()),
  ]);
  if (timedOut && !hasExited()) {
    child.kill('SIGKILL');
    await exitPromise;
  }
}

/** True when nothing listens on 127.0.0.1:port (probed by binding it briefly). */
function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}

/**
 * Sends one inline command over a raw TCP connection and returns the reply: a status line
 * (`+PONG`) as is, a bulk string's payload, or rejects on an error reply. Just enough RESP to
 * health-check without a client library.
 */
export function redisCommand(port: number, command: string, host = HOST, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    let buffer = Buffer.alloc(0);
    const finish = (error: Error | undefined, value?: string): void => {
      socket.destroy();
      if (error) reject(error);
      else resolve(value ?? '');
    };
    socket.setTimeout(timeoutMs, () => finish(new Error('Redis did not answer in time')));
    socket.once('error', (error) => finish(error));
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const lineEnd = buffer.indexOf('\r\n');
      if (lineEnd < 0) return;
      const first = buffer.subarray(0, lineEnd).toString('utf8');
      if (first.startsWith('+')) return finish(undefined, first);
      if (first.startsWith('-')) return finish(new Error(first.slice(1)));
      if (first.startsWith('$')) {
        const length = Number(first.slice(1));
        if (length < 0) return finish(undefined, '');
        if (buffer.length < lineEnd + 2 + length) return; // wait for the rest of the payload
        return finish(undefined, buffer.subarray(lineEnd + 2, lineEnd + 2 + length).toString('utf8'));
      }
      return finish(undefined, first);
    });
    socket.once('end', () => finish(new Error('Redis closed the connection')));
  });
}

function errnoCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}
