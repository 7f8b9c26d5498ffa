/** `npm run bench -- [--quick|--full] [--seconds N] [--connections N] [--rows a,b] [--out FILE]`, and the same as env. */
export interface BenchOptions {
  mode: 'quick' | 'default' | 'full';
  /** Duration of each load row. */
  seconds: number;
  /** Connections of every throughput row (the latency rows say their own). */
  connections: number;
  /** Only these row ids (and what they need); undefined: the mode's rows. */
  rows: Set<string> | undefined;
  /** Where results.json goes. */
  out: string;
  /** Skip `npm run build` (the caller built already). */
  skipBuild: boolean;
  /** Keys per tier the crypto rows spread over (BENCH_KEYS; default 20 quick, 100 otherwise). */
  keysPerTier: number;
}

export const USAGE = `usage: npm run bench -- [--quick | --full] [--seconds N] [--connections N] [--rows id,id] [--out FILE] [--no-build]
  --quick        short rows, fewer workloads (about 75 s idle)
  --full         also the 100,000-version HsmEncryptedDatabase rows (minutes)
  --seconds N    duration of each load row (BENCH_SECONDS; default 2 quick, 5 otherwise)
  --connections  connections of the throughput rows (BENCH_CONNECTIONS; default 64)
  --rows         only these rows (ids as in results.json)
  --out FILE     results file (BENCH_RESULTS; default bench/results.json)
  --no-build     skip npm run build (BENCH_NO_BUILD=1)
  BENCH_KEYS     keys per tier the crypto rows spread over (default 20 quick, 100 otherwise)
  BENCH_SERVER_NODE_ARGS  node flags for kms serve, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
  BENCH_SERVER_ENV        settings for kms serve only, e.g. "KMS_PROCESSES=2 KMS_DB_POOL_SIZE=20"`;

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv, defaultOut: string): BenchOptions {
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}\n${USAGE}`);
    const [name, inline] = arg.slice(2).split('=', 2) as [string, string | undefined];
    const takesValue = ['seconds', 'connections', 'rows', 'out'].includes(name);
    if (!takesValue && !['quick', 'full', 'no-build', 'help'].includes(name)) throw new Error(`unknown option --${name}\n${USAGE}`);
    flags.set(name, takesValue ? (inline ?? argv[++i] ?? '') : true);
  }
  if (flags.has('help')) throw new Error(USAGE);
  const mode = flags.has('quick') ? 'quick' : flags.has('full') ? 'full' : 'default';
  const number = (value: string | true | undefined, fallback: number, name: string) => {
    if (value === undefined || value === true) return fallback;
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number`);
    return n;
  };
  const rowsFlag = flags.get('rows');
  return {
    mode,
    seconds: number(flags.get('seconds') ?? env.BENCH_SECONDS, mode === 'quick' ? 2 : 5, '--seconds'),
    connections: Math.round(number(flags.get('connections') ?? env.BENCH_CONNECTIONS, 64, '--connections')),
    rows: typeof rowsFlag === 'string' ? new Set(rowsFlag.split(',').map((s) => s.trim()).filter(Boolean)) : undefined,
    out: typeof flags.get('out') === 'string' ? (flags.get('out') as string) : (env.BENCH_RESULTS ?? defaultOut),
    skipBuild: flags.has('no-build') || env.BENCH_NO_BUILD === '1',
    keysPerTier: Math.max(1, Math.round(number(env.BENCH_KEYS, mode === 'quick' ? 20 : 100, 'BENCH_KEYS'))),
  };
}
