/**
 * Profiling rig, load side: autocannon from this process, 64 connections, every request signed
 * (HMAC-SHA1 v1 with a fresh SignatureNonce, all parameters in the query as the 1.2.0 SDK
 * sends them), 64-byte plaintexts, against the server scripts/profile-server.ts started; and a
 * bare node:http JSON hello in a child process, driven the same way, as the baseline.
 *
 *   tsx scripts/profile-load.ts /tmp/kms-profile.json            (the default rows, 10 s each)
 *   rows: hello, enc-hsm, dec-hsm (HsmInternal), enc-edb, dec-edb (HsmEncryptedDatabase),
 *   enc-sw, dec-sw, gdk-hsm, gdk-edb, gdk-sw (GenerateDataKey, AES_256)
 *   PROFILE_WARMUP_SECONDS (default 2): untimed load before each row
 *   PROFILE_RATE (default: as fast as the server answers): requests/s over all connections.
 *     CPU per request falls as the rate rises (Redis auto-pipelining and audit batches amortise),
 *     and the rate moves with the neighbours: to compare two builds, drive both at one rate below
 *     either's maximum.
 *   PROFILE_SECONDS=5 PROFILE_ROWS=hello,enc-hsm tsx scripts/profile-load.ts /tmp/kms-profile.json
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import autocannon from 'autocannon';
import { formatTimestamp, percentEncode, signV1 } from '../src/api/signature.js';

interface Setup {
  endpoint: string;
  pid: number;
  /** Every server process (kms serve --processes N), whose CPU is summed. */
  pids?: number[];
  accessKeyId: string;
  accessKeySecret: string;
  keys: Record<'HSM' | 'HSM_EDB' | 'SOFTWARE', { keyId: string; ciphertext: string }>;
}

const setup = JSON.parse(await readFile(process.argv[2] ?? '/tmp/kms-profile.json', 'utf8')) as Setup;
const SECONDS = Number(process.env.PROFILE_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.PROFILE_CONNECTIONS ?? 64);
const WARMUP_SECONDS = Number(process.env.PROFILE_WARMUP_SECONDS ?? 2);
const ROWS = (process.env.PROFILE_ROWS ?? 'hello,enc-hsm,dec-hsm,enc-edb,dec-edb,enc-sw,gdk-hsm,gdk-edb').split(',');
const PLAINTEXT = Buffer.alloc(64, 'p').toString('base64');
const RATE = process.env.PROFILE_RATE ? { overallRate: Number(process.env.PROFILE_RATE) } : {};

/** The signed query of one v1 call: sorted as the SDK sends it does not matter, the signature sorts. */
function signedPath(action: string, business: Record<string, string>): string {
  const params: Record<string, string> = {
    Action: action,
    Format: 'JSON',
    Version: '2016-01-20',
    Timestamp: formatTimestamp(new Date()),
    SignatureNonce: randomBytes(16).toString('hex'),
    SignatureMethod: 'HMAC-SHA1',
    SignatureVersion: '1.0',
    AccessKeyId: setup.accessKeyId,
    ...business,
  };
  params.Signature = signV1({ method: 'POST', params, accessKeySecret: setup.accessKeySecret });
  return `/?${Object.entries(params).map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`).join('&')}`;
}

interface Row { name: string; rate: number; p50: number; p99: number; non2xx: number; errors: number; cpuUsPerRequest: number }

/** CPU seconds (user + system) a process has used: the machine is shared, so rates move with the neighbours; CPU per request does not. */
function cpuSeconds(pid: number | number[]): number {
  if (Array.isArray(pid)) return pid.reduce((sum, one) => sum + cpuSeconds(one), 0);
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const warmed = new Set<string>();

async function drive(name: string, url: string, path: (() => string) | undefined, pid: number | number[]): Promise<Row> {
  // Untimed warm-up (JIT, lazily loaded modules, caches): without it the first row of a run
  // measured up to 50 % more CPU per request than the same row run again.
  // The first row against a freshly started server warms longer: 2 s were not enough there.
  const warmup = WARMUP_SECONDS > 0 && !warmed.has(url) ? Math.max(WARMUP_SECONDS, 6) : WARMUP_SECONDS;
  warmed.add(url);
  if (warmup > 0) await autocannon({ url, connections: CONNECTIONS, duration: warmup, ...RATE, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, requests: [path ? { setupRequest: (req: any) => ({ ...req, path: path() }) } : {}] } as autocannon.Options);
  const cpuBefore = cpuSeconds(pid);
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: SECONDS,
    ...RATE,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    requests: [path ? { setupRequest: (req: any) => ({ ...req, path: path() }) } : {}],
  } as autocannon.Options);
  const row = {
    name,
    rate: Math.round(result.requests.total / (result.duration || SECONDS)),
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    cpuUsPerRequest: Math.round((1e6 * (cpuSeconds(pid) - cpuBefore)) / Math.max(1, result.requests.total)),
  };
  console.log(`${name.padEnd(24)} ${String(row.rate).padStart(7)}/s  p50 ${String(row.p50).padStart(4)} ms  p99 ${String(row.p99).padStart(4)} ms  non2xx ${row.non2xx}  errors ${row.errors}  server CPU ${row.cpuUsPerRequest} µs/req`);
  return row;
}

const HELLO = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const body = JSON.stringify({ RequestId: 'hello', Message: 'hello' });
    res.writeHead(200, { 'content-type': 'application/json;charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

async function startHello(): Promise<{ port: number; pid: number; stop(): void }> {
  const child = spawn(process.execPath, ['-e', HELLO], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  return { port, pid: child.pid!, stop: () => child.kill('SIGTERM') };
}

const rows: Row[] = [];
const kms = `http://${setup.endpoint}`;
for (const row of ROWS) {
  if (row === 'hello') {
    const hello = await startHello();
    rows.push(await drive('node:http hello', `http://127.0.0.1:${hello.port}`, () => signedPath('Encrypt', { KeyId: setup.keys.HSM.keyId, Plaintext: PLAINTEXT }), hello.pid));
    hello.stop();
  } else if (row === 'enc-hsm') rows.push(await drive('Encrypt HSM 64 B', kms, () => signedPath('Encrypt', { KeyId: setup.keys.HSM.keyId, Plaintext: PLAINTEXT }), setup.pids ?? setup.pid));
  else if (row === 'dec-hsm') rows.push(await drive('Decrypt HSM 64 B', kms, () => signedPath('Decrypt', { CiphertextBlob: setup.keys.HSM.ciphertext }), setup.pids ?? setup.pid));
  else if (row === 'enc-edb') rows.push(await drive('Encrypt HSM-EDB 64 B', kms, () => signedPath('Encrypt', { KeyId: setup.keys.HSM_EDB.keyId, Plaintext: PLAINTEXT }), setup.pids ?? setup.pid));
  else if (row === 'dec-edb') rows.push(await drive('Decrypt HSM-EDB 64 B', kms, () => signedPath('Decrypt', { CiphertextBlob: setup.keys.HSM_EDB.ciphertext }), setup.pids ?? setup.pid));
  else if (row === 'dec-sw') rows.push(await drive('Decrypt SOFTWARE 64 B', kms, () => signedPath('Decrypt', { CiphertextBlob: setup.keys.SOFTWARE.ciphertext }), setup.pids ?? setup.pid));
  else if (row === 'gdk-hsm') rows.push(await drive('GenerateDataKey HSM', kms, () => signedPath('GenerateDataKey', { KeyId: setup.keys.HSM.keyId }), setup.pids ?? setup.pid));
  else if (row === 'gdk-edb') rows.push(await drive('GenerateDataKey HSM-EDB', kms, () => signedPath('GenerateDataKey', { KeyId: setup.keys.HSM_EDB.keyId }), setup.pids ?? setup.pid));
  else if (row === 'gdk-sw') rows.push(await drive('GenerateDataKey SOFTWARE', kms, () => signedPath('GenerateDataKey', { KeyId: setup.keys.SOFTWARE.keyId }), setup.pids ?? setup.pid));
  else if (row === 'enc-sw') rows.push(await drive('Encrypt SOFTWARE 64 B', kms, () => signedPath('Encrypt', { KeyId: setup.keys.SOFTWARE.keyId, Plaintext: PLAINTEXT }), setup.pids ?? setup.pid));
  else throw new Error(`unknown row ${row}`);
}
const hello = rows.find((r) => r.name === 'node:http hello');
if (hello) for (const r of rows) console.log(`${r.name.padEnd(24)} ${((100 * r.rate) / hello.rate).toFixed(1)} % of hello`);
