import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cleanup } from './cleanup.js';

/** A child process of the bench: its output goes to a log file (never to the terminal). */
export interface BenchChild {
  readonly label: string;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code (or the signal's name) once it has exited. */
  readonly exited: Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
  /** The last lines of its log, for a failure report. */
  tail(lines?: number): Promise<string>;
}

export interface SpawnOptions {
  label: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  logFile: string;
}

/** Starts a process whose stop is registered with `cleanup` at once. */
export function spawnChild(cleanup: Cleanup, o: SpawnOptions): BenchChild {
  const fd = openSync(o.logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = spawn(o.command, o.args, { cwd: o.cwd, env: o.env, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) throw new Error(`${o.label}: could not start ${o.command}`);
  const pid = child.pid;
  let gone = false;
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => {
      gone = true;
      resolve(signal ?? String(code));
    });
    child.once('error', (error) => {
      gone = true;
      resolve(`error: ${error.message}`);
    });
  });
  const handle: BenchChild = {
    label: o.label,
    pid,
    logFile: o.logFile,
    exited,
    async stop(graceMs = 5_000) {
      if (gone) return;
      child.kill('SIGTERM');
      const outcome = await Promise.race([exited, sleep(graceMs).then(() => 'timeout')]);
      if (outcome === 'timeout' && !gone) {
        child.kill('SIGKILL');
        await exited;
      }
    },
    async tail(lines = 20) {
      const text = await readFile(o.logFile, 'utf8').catch(() => '');
      return text.split('\n').slice(-lines - 1).join('\n');
    },
  };
  cleanup.add(`stop ${o.label} (pid ${pid})`, () => handle.stop());
  return handle;
}

/** Polls `probe` until it returns a value, the child exits, or the deadline passes. */
export async function waitFor<T>(child: BenchChild | undefined, what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let exitedWith: string | undefined;
  void child?.exited.then((code) => (exitedWith = code));
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (exitedWith !== undefined) throw new Error(`${child?.label} exited (${exitedWith}) before ${what}:\n${await child?.tail()}`);
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${child ? `:\n${await child.tail()}` : ''}`);
    await sleep(25);
  }
}

/** Resident set size of a live process, from /proc (bytes), or undefined if it is gone. */
export async function rssBytes(pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return match ? Number(match[1]) * 1024 : undefined;
}

/**
 * CPU seconds (user + system) a live process and its child processes (`kms serve --processes
 * N`'s workers) have used so far, from /proc; 0 for a process that is gone.
 */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // Fields after the command name (which may hold spaces) end with ") ": utime and stime are the 14th and 15th.
  const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
  const own = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  let total = Number.isFinite(own) ? own : 0;
  for (const child of children.split(' ').filter(Boolean)) total += await cpuSeconds(Number(child));
  return total;
}

/** USER_HZ: 100 on every Linux ABI node runs on (`getconf CLK_TCK`). */
const CLOCK_TICKS_PER_SECOND = 100;
