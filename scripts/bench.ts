/**
 * `npm run bench [-- --quick | --full]`: issue 16's benchmark in one run. Builds, starts
 * `kms serve` as a separate process (fresh data dir and SoftHSM2 token, database `bench_<pid>`
 * on the local Postgres, its own Redis prefix), drives it from this process with autocannon —
 * every request signed with a fresh nonce, ahead of its row's measured window (bench/load.ts) —
 * next to baselines measured in the same run (bare node:http hello, express hello, raw
 * pkcs11js and node:crypto), prints one table with PASS/FAIL per target and writes
 * bench/results.json. Everything it made is removed at the end,
 * also on failure or Ctrl-C. See README, "Performance".
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOptions } from './bench/options.js';
import { renderTable, writeResults } from './bench/report.js';
import { runBench } from './bench/run.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2), process.env, path.join(repoRoot, 'bench', 'results.json'));
  const started = performance.now();
  const log = (line: string) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s] ${line}\n`);
  log(`bench: ${options.mode}, ${options.seconds} s per row, ${options.connections} connections`);
  const report = await runBench(options, repoRoot, log);
  await writeResults(options.out, report);
  const { machine: m, summary: s } = report;
  process.stdout.write(
    `\nhsm-kms bench — ${report.date.slice(0, 16).replace('T', ' ')} UTC, ${m.cpus} × ${m.model}, load average ${m.loadAverageAtStart} at start, node ${m.node}, ` +
      `${report.mode}, ${report.secondsPerRow} s/row, ${report.connections} connections, server ${report.server}\n\n` +
      `${renderTable(report.rows)}\n\n` +
      'Ratios are to the bare node:http hello unless named; a load row passes only with 0 non-2xx answers and 0 connection errors.\n' +
      `targets: ${s.passed} PASS, ${s.failed} FAIL, ${s.notAvailable} n/a — results in ${path.relative(process.cwd(), options.out) || options.out}\n`,
  );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
