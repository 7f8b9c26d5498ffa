/**
 * CPU per request log line through pino to a file: synchronous, pino's default asynchronous
 * SonicBoom, and asynchronous with a 4 KiB minLength (fewer, larger writes). The basis of
 * KMS_LOG_REQUESTS's default (README, Performance). `tsx scripts/profile-log-micro.ts`
 */
import { destination, pino } from 'pino';

async function run(label: string, options: { sync: boolean; minLength: number }): Promise<void> {
  const dest = destination({ dest: '/tmp/hsm-kms-log-micro.out', ...options });
  const logger = pino({ level: 'info', base: { service: 'hsm-kms' } }, dest);
  const n = 200_000;
  const start = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    logger.info({ requestId: 'ABCDEF01-2345-6789-ABCD-EF0123456789', action: 'Encrypt', accessKeyId: 'LTAIabcdefghijklmnopqrst', ms: i / 7 }, 'rpc');
    // Let asynchronous writes complete as they would between requests.
    if (i % 64 === 63) await new Promise((r) => setImmediate(r));
  }
  dest.flushSync();
  const used = process.cpuUsage(start);
  console.log(`${label.padEnd(36)} ${((used.user + used.system) / n).toFixed(2)} µs CPU per line`);
}

for (let round = 0; round < 2; round++) {
  await run('sync', { sync: true, minLength: 0 });
  await run('async (pino default)', { sync: false, minLength: 0 });
  await run('async, minLength 4096', { sync: false, minLength: 4096 });
}
