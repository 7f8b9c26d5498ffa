import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * `npm run bench` cannot rot: a reduced run (two rows, 1 s each, 8 connections, 4 keys) of the
 * real script — its own kms serve process, token, database and Redis prefix — prints the table
 * and writes results.json in the documented shape, and leaves no database or temp dir behind.
 * No assertion on a number: speed is the benchmark's business, not this test's.
 */
const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');

describe('npm run bench (reduced)', () => {
  let outDir: string | undefined;
  afterAll(async () => {
    if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  it('prints one table with a hello baseline and a signed Encrypt row, writes results.json, and cleans up', { timeout: 150_000 }, async () => {
    outDir = await mkdtemp(path.join(tmpdir(), 'kms-bench-test-'));
    const out = path.join(outDir, 'results.json');
    const { stdout, stderr } = await run(
      process.execPath,
      ['--import', 'tsx', 'scripts/bench.ts', '--rows', 'hello,encrypt-hsm-64', '--seconds', '1', '--connections', '8', '--no-build', '--out', out],
      {
        cwd: repoRoot,
        env: { ...process.env, BENCH_KEYS: '4', DATABASE_URL: process.env.KMS_TEST_DATABASE_BASE_URL ?? process.env.DATABASE_URL },
        maxBuffer: 8 * 1024 * 1024,
        timeout: 140_000,
      },
    );

    expect(stdout).toMatch(/^\| row \| ops\/s \| p50 ms \| p99 ms \| ratio \| target \| result \| non-2xx \| CPU gen \/ server \|$/m);
    expect(stdout).toMatch(/^\| node:http hello \(bare\) \| [\d,]+ \|/m);
    expect(stdout).toMatch(/^\| Encrypt 64 B, HSM HsmInternal \(4 keys\) \| [\d,]+ \| .* \| (PASS|FAIL) \| \d+ \| \d+\.\d\d \/ \d+\.\d\d \|$/m);
    expect(stdout).toMatch(/targets: \d+ PASS, \d+ FAIL, \d+ n\/a/);

    const report = JSON.parse(await readFile(out, 'utf8')) as {
      machine: { cpus: number };
      connections: number;
      secondsPerRow: number;
      rows: Array<{
        id: string;
        kind: string;
        opsPerSecond: number;
        p50Ms: number;
        p99Ms: number;
        non2xx: number;
        requests: number;
        target: string;
        pass: boolean;
        ratio?: number;
        presigned: number;
        signedInWindow: number;
        generatorCores: number;
        serverCores: number;
      }>;
      summary: { targets: number; passed: number; failed: number };
    };
    expect(report.machine.cpus).toBeGreaterThan(0);
    expect(report.connections).toBe(8);
    expect(report.secondsPerRow).toBe(1);
    expect(report.rows.map((r) => r.id)).toEqual(['hello', 'encrypt-hsm-64']);
    const [hello, encrypt] = report.rows;
    for (const row of [hello!, encrypt!]) {
      expect(row.opsPerSecond).toBeGreaterThan(0);
      expect(typeof row.p50Ms).toBe('number');
      expect(typeof row.p99Ms).toBe('number');
      expect(typeof row.non2xx).toBe('number');
      expect(typeof row.pass).toBe('boolean');
      // Signed ahead of the window, each request once: the ones sent come from the batch or are counted as signed in the window.
      expect(row.presigned).toBeGreaterThan(0);
      expect(row.presigned + row.signedInWindow).toBeGreaterThanOrEqual(row.requests);
      // Both sides' CPU over the window was read (the server's from /proc).
      expect(row.generatorCores).toBeGreaterThan(0);
      expect(row.serverCores).toBeGreaterThan(0);
    }
    // Every request was signed well enough, with a nonce not used before, for the real server to answer 2xx (it refuses a replay).
    expect(encrypt!.non2xx).toBe(0);
    expect(encrypt!.kind).toBe('load');
    expect(encrypt!.ratio).toBeCloseTo(encrypt!.opsPerSecond / hello!.opsPerSecond, 6);
    expect(encrypt!.target).toBe('≥ 25 % of hello, p99 ≤ 15 ms');
    expect(report.summary.targets).toBe(2);
    expect(report.summary.passed + report.summary.failed).toBe(2);

    // Nothing left behind: the temp dir and the bench_<pid> database are gone.
    const dataDir = /data dir in (\S+),/.exec(stderr)?.[1];
    const database = /database (bench_\d+),/.exec(stderr)?.[1];
    expect(dataDir).toBeDefined();
    expect(database).toBeDefined();
    expect(existsSync(dataDir!)).toBe(false);
    const admin = new pg.Client({ connectionString: process.env.KMS_TEST_DATABASE_BASE_URL });
    await admin.connect();
    try {
      const { rows } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      expect(rows).toHaveLength(0);
    } finally {
      await admin.end();
    }
  });
});
