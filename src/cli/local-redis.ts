import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { errnoCode } from '../errno.js';

/**
 * A private redis-server for the quickstart when no REDIS_URL is given: a child process bound to
 * 127.0.0.1 with its append-only file under the data dir, so queued jobs survive a restart.
 *
 * It requires a password (the local-services secret): without one any local process could
 * delete a replay nonce and have a refused request accepted (issue 13). The password is in a
 * 0600 `redis.conf` under the data dir, never on the command line, where `ps` shows it.
 *
 * Redis writes its pid to `<dataDir>/redis/redis.pid` and we write ours to `owner.pid`. A
 * quickstart killed with SIGKILL leaves its redis-server running; the next start finds it
 * through the pidfile and, when it is really a redis-server serving this data dir and its owner
 * is gone, stops it (SIGTERM, so the AOF is flushed) and starts a child of its own — rather
 * than reuse it, so that `stop()` and the exit hook keep working as for any child.
 */

/** Options for {@link startPrivateRedis}. */
export interface PrivateRedisOptions {
  /** The service data dir; Redis keeps its files in `<dataDir>/redis`. */
  dataDir: string;
  /** The password clients must AUTH with (the quickstart's local-services secret). */
  password: string;
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
  /** `redis://:<password>@127.0.0.1:PORT`. It carries the secret: never log it. */
  url: string;
  /** The bound TCP port. */
  port: number;
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
  if (!/^[\x21-\x7e]+$/.test(opts.password)) throw new Error('The private Redis needs a password of printable characters.');
  const command = opts.command ?? 'redis-server';
  const dir = path.resolve(opts.dataDir, 'redis');
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await stopStaleServer(dir);
  const configFile = await writeRedisConfig(dir, opts.password);

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
    const attempt = await tryStart({ command, dir, configFile, port, password: opts.password, timeoutMs: opts.startTimeoutMs ?? 15_000 });
    if (attempt.ok) return attempt.redis;
    lastReason = attempt.reason;
    // Another process grabbed the port between the probe and the bind: try the next one.
    if (!attempt.addressInUse) break;
  }
  throw new Error(`Cannot start a private redis-server: ${lastReason}`);
}

type Attempt = { ok: true; redis: PrivateRedis } | { ok: false; reason: string; addressInUse: boolean };

async function tryStart(o: { command: string; dir: string; configFile: string; port: number; password: string; timeoutMs: number }): Promise<Attempt> {
  const { command, dir, port, password, timeoutMs } = o;
  const args = [
    // First: the 0600 file with requirepass and pidfile; the flags below add to it.
    o.configFile,
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
    const pong = await redisCommand(port, 'PING', { password }).catch(() => undefined);
    if (pong === '+PONG') {
      const info = await redisCommand(port, 'INFO server', { password }).catch(() => '');
      const pid = /process_id:(\d+)/.exec(info)?.[1];
      if (pid === String(child.pid)) break;
      // Someone else's Redis answered: ours will fail to bind and exit; report it as in use.
      await terminate(child, exitPromise, () => exited !== undefined);
      return { ok: false, reason: `port ${port} is held by another Redis`, addressInUse: true };
    }
    await Promise.race([exitPromise, new Promise((resolve) => setTimeout(resolve, 50))]);
  }

  // A quickstart that exits without calling stop() must not leave an orphan Redis behind.
  // (A SIGKILL runs no handler: the pidfile lets the next start find the orphan.)
  const killOnExit = (): void => {
    if (!exited) child.kill('SIGTERM');
  };
  process.once('exit', killOnExit);
  const ownerFile = path.join(dir, OWNER_FILE);
  await fs.writeFile(ownerFile, `${process.pid}\n`, { mode: 0o600 });

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      process.removeListener('exit', killOnExit);
      await terminate(child, exitPromise, () => exited !== undefined);
      await fs.rm(ownerFile, { force: true });
    })();
    return stopped;
  };
  return { ok: true, redis: { url: `redis://:${encodeURIComponent(password)}@${HOST}:${port}`, port, stop } };
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
 * Sends one inline command over a raw TCP connection (after `AUTH <password>` when given) and
 * returns the reply: a status line (`+PONG`) as is, a bulk string's payload, or rejects on an
 * error reply. Just enough RESP to health-check without a client library.
 */
export function redisCommand(
  port: number,
  command: string,
  options: { host?: string; timeoutMs?: number; password?: string } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: options.host ?? HOST });
    let buffer = Buffer.alloc(0);
    let awaitingAuth = options.password !== undefined;
    const finish = (error: Error | undefined, value?: string): void => {
      socket.destroy();
      if (error) reject(error);
      else resolve(value ?? '');
    };
    socket.setTimeout(options.timeoutMs ?? 2_000, () => finish(new Error('Redis did not answer in time')));
    socket.once('error', (error) => finish(error));
    socket.once('connect', () => socket.write(`${options.password !== undefined ? `AUTH ${options.password}\r\n` : ''}${command}\r\n`));
    const readReply = (): void => {
      for (;;) {
        const lineEnd = buffer.indexOf('\r\n');
        if (lineEnd < 0) return;
        const first = buffer.subarray(0, lineEnd).toString('utf8');
        if (awaitingAuth) {
          // The reply to AUTH is never echoed: nothing about the secret goes into a message.
          if (first !== '+OK') return finish(new Error('Redis refused the password'));
          awaitingAuth = false;
          buffer = buffer.subarray(lineEnd + 2);
          continue;
        }
        if (first.startsWith('+')) return finish(undefined, first);
        if (first.startsWith('-')) return finish(new Error(first.slice(1)));
        if (first.startsWith('$')) {
          const length = Number(first.slice(1));
          if (length < 0) return finish(undefined, '');
          if (buffer.length < lineEnd + 2 + length) return; // wait for the rest of the payload
          return finish(undefined, buffer.subarray(lineEnd + 2, lineEnd + 2 + length).toString('utf8'));
        }
        return finish(undefined, first);
      }
    };
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      readReply();
    });
    socket.once('end', () => finish(new Error('Redis closed the connection')));
  });
}

const OWNER_FILE = 'owner.pid';
const PID_FILE = 'redis.pid';

/** Quotes a value for redis.conf (its parser takes C-style escapes inside double quotes). */
function confValue(value: string): string {
  return JSON.stringify(value);
}

/** Writes `<dir>/redis.conf` (0600): the password and the pidfile, nothing `ps` would show. */
async function writeRedisConfig(dir: string, password: string): Promise<string> {
  const file = path.join(dir, 'redis.conf');
  const tmp = `${file}.${process.pid}.tmp`;
  const text = [
    '# Written by hsm-kms at every start of its private Redis; holds the local-services secret.',
    `requirepass ${confValue(password)}`,
    `pidfile ${confValue(path.join(dir, PID_FILE))}`,
    '',
  ].join('\n');
  await fs.writeFile(tmp, text, { mode: 0o600 });
  await fs.chmod(tmp, 0o600);
  await fs.rename(tmp, file);
  return file;
}

/**
 * A redis-server left running over `dir` by a quickstart that was killed: found through the
 * pidfile Redis writes, stopped when it is really a redis-server working in `dir` and the
 * process that started it is gone. A live owner (another quickstart on this data dir) is
 * refused instead.
 */
async function stopStaleServer(dir: string): Promise<void> {
  const pidFile = path.join(dir, PID_FILE);
  const pid = await readPid(pidFile);
  if (pid === undefined) return;
  if (!isRunning(pid) || !(await isRedisServerIn(pid, dir))) {
    // Gone, or the pid now belongs to another program: the file is stale.
    await fs.rm(pidFile, { force: true });
    return;
  }
  const owner = await readPid(path.join(dir, OWNER_FILE));
  if (owner !== undefined && owner !== process.pid && isRunning(owner)) {
    throw new Error(`The private Redis in ${dir} belongs to running process ${owner}; stop it first, or set REDIS_URL.`);
  }
  process.kill(pid, 'SIGTERM');
  if (!(await exitsWithin(pid, 10_000))) {
    process.kill(pid, 'SIGKILL');
    if (!(await exitsWithin(pid, 5_000))) throw new Error(`The stale redis-server ${pid} over ${dir} did not stop.`);
  }
  await fs.rm(pidFile, { force: true });
}

async function readPid(file: string): Promise<number | undefined> {
  const pid = Number((await fs.readFile(file, 'utf8').catch(() => '')).trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** Alive and not a zombie (an orphan's zombie lingers where nobody reaps it). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return errnoCode(error) === 'EPERM';
  }
  return procStat(pid)?.state !== 'Z';
}

function procStat(pid: number): { state: string } | undefined {
  try {
    // Field 3 follows "(comm)", which may itself hold spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state ? { state } : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `pid` runs redis-server with `dir` as its working dir (Redis chdirs to `--dir`). */
async function isRedisServerIn(pid: number, dir: string): Promise<boolean> {
  const cwd = await fs.readlink(`/proc/${pid}/cwd`).catch(() => undefined);
  if (cwd !== undefined) {
    const comm = (await fs.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
    return comm.startsWith('redis-server') && path.resolve(cwd) === (await fs.realpath(dir).catch(() => dir));
  }
  // No /proc (macOS): the program name is all we can check; the pidfile was in our dir.
  const { stdout } = await promisify(execFile)('ps', ['-p', String(pid), '-o', 'comm=']).catch(() => ({ stdout: '' }));
  return stdout.includes('redis-server');
}

async function exitsWithin(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isRunning(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}
