import type { Command } from 'commander';
import { withLocalKms } from '../local-kms.js';
import { print } from '../output.js';

/**
 * `kms quota`: every instance with its key quota (versions used / total) and its QPS spec with
 * the QPS admitted over the last second across every process — a table by default, `--json`
 * for scripts. The same numbers as GetKmsInstanceQuotaInfos and the /metrics quota gauges.
 */
export function register(program: Command): void {
  program
    .command('quota')
    .description('every instance: key versions used/total and QPS spec/used over the last second (operator command on the local store)')
    .option('--json', 'print JSON instead of a table')
    .action(async (o: { json?: boolean }) =>
      withLocalKms(async (kms) => {
        const [{ quotaOverview }, { systemCaller }] = await Promise.all([import('../../services/instances.js'), import('../../services/context.js')]);
        const rows = (await quotaOverview(kms.deps, systemCaller)).map(({ instance, versionsUsed, qpsUsed }) => ({
          InstanceId: instance.id,
          Type: instance.type,
          VersionsUsed: versionsUsed,
          VersionsTotal: instance.keyQuota,
          KeyQuotaUsedPercent: instance.keyQuota === 0 ? 0 : Math.round((1000 * versionsUsed) / instance.keyQuota) / 10,
          QpsSpec: instance.qps,
          QpsUsed: qpsUsed,
        }));
        print(rows, { table: !o.json });
      }),
    );
}
