import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import path from 'node:path';

/** One line of the table. A row without `opsPerSecond` reports a single `value` (start time, RSS, a count). */
export interface BenchRow {
  id: string;
  name: string;
  kind: 'baseline' | 'load' | 'measure';
  opsPerSecond?: number;
  p50Ms?: number;
  p99Ms?: number;
  /** For `measure` rows: the measured value, already formatted with its unit. */
  value?: string;
  /** Ratio to the bare node:http hello, or to the baseline named in `ratioTo`. */
  ratio?: number;
  ratioTo?: string;
  target?: string;
  /** undefined: no target, or not evaluated (n/a). */
  pass?: boolean;
  non2xx?: number;
  errors?: number;
  requests?: number;
  connections?: number;
  /** Load rows: CPU over the measured window, in cores (1 = one core busy), of the load generator … */
  generatorCores?: number;
  /** … and of the server (its cluster workers included). Beside the rate they say which side was the limit. */
  serverCores?: number;
  /** Load rows: requests signed before the measured window, and those signed in it (the batch ran out). */
  presigned?: number;
  signedInWindow?: number;
  /** Why a row did not run, refusal codes seen, how it was set up. */
  note?: string;
}

export interface BenchReport {
  date: string;
  machine: { cpus: number; model: string; memoryGiB: number; node: string; loadAverageAtStart: number };
  mode: string;
  secondsPerRow: number;
  connections: number;
  server: string;
  rows: BenchRow[];
  summary: { targets: number; passed: number; failed: number; notAvailable: number };
}

export function machine(): BenchReport['machine'] {
  const list = cpus();
  return {
    cpus: list.length,
    model: list[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    loadAverageAtStart: Math.round(loadavg()[0]! * 100) / 100,
  };
}

export function summarize(rows: BenchRow[]): BenchReport['summary'] {
  const withTarget = rows.filter((r) => r.target !== undefined);
  return {
    targets: withTarget.length,
    passed: withTarget.filter((r) => r.pass === true).length,
    failed: withTarget.filter((r) => r.pass === false).length,
    notAvailable: withTarget.filter((r) => r.pass === undefined).length,
  };
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number | undefined) => (n === undefined ? '' : `${n < 10 ? n.toFixed(1).replace(/\.0$/, '') : int(n)}`);

/** The table as GitHub markdown (what the terminal shows and the README keeps). */
export function renderTable(rows: BenchRow[]): string {
  const header = ['row', 'ops/s', 'p50 ms', 'p99 ms', 'ratio', 'target', 'result', 'non-2xx', 'CPU gen / server'];
  const lines = rows.map((r) => [
    r.name + (r.note ? ` — ${r.note}` : ''),
    r.opsPerSecond !== undefined ? int(r.opsPerSecond) : (r.value ?? ''),
    ms(r.p50Ms),
    ms(r.p99Ms),
    r.ratio !== undefined ? `${(r.ratio * 100).toFixed(r.ratio < 0.1 ? 1 : 0)} %${r.ratioTo ? ` of ${r.ratioTo}` : ''}` : '',
    r.target ?? '',
    r.target === undefined ? '' : r.pass === undefined ? 'n/a' : r.pass ? 'PASS' : 'FAIL',
    r.non2xx === undefined ? '' : `${r.non2xx + (r.errors ?? 0)}`,
    r.generatorCores === undefined ? '' : `${r.generatorCores.toFixed(2)} / ${r.serverCores === undefined ? '?' : r.serverCores.toFixed(2)}`,
  ]);
  const out = [header, header.map(() => '---'), ...lines].map((cells) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`);
  return out.join('\n');
}

export async function writeResults(file: string, report: BenchReport): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
}
