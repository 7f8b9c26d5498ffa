import type { Command } from 'commander';
import { kmsInstance } from '../../api/presenters.js';
import { systemCaller } from '../../services/context.js';
import { createInstance, describeInstance, instanceQuotaInfos, pageInstances, updateInstance } from '../../services/instances.js';
import { withLocalKms } from '../local-kms.js';
import { print } from '../output.js';

const integer = (name: string) => (value: string) => {
  if (!/^\d+$/.test(value)) throw new Error(`${name} must be a whole number`);
  return Number(value);
};

export function registerInstanceCommands(program: Command): void {
  const instance = program.command('instance').description('KMS instances (operator commands on the local store)');
  instance
    .command('create')
    .requiredOption('--type <type>', 'HSM or SOFTWARE')
    .requiredOption('--key-quota <n>', 'key versions the instance may hold', integer('--key-quota'))
    .requiredOption('--qps <n>', 'requests per second', integer('--qps'))
    .option('--name <name>', 'a display name')
    .option('--table', 'print a table instead of JSON')
    .action(async (o: { type: string; keyQuota: number; qps: number; name?: string; table?: boolean }) => {
      const type = o.type.toUpperCase();
      if (type !== 'HSM' && type !== 'SOFTWARE') throw new Error('--type must be HSM or SOFTWARE');
      await withLocalKms(async (kms) => {
        const created = await createInstance(kms.deps, { type, keyQuota: o.keyQuota, qps: o.qps, name: o.name }, systemCaller);
        print(kmsInstance(created, kms.deps.config), o);
      });
    });
  instance
    .command('list')
    .option('--table', 'print a table instead of JSON')
    .action(async (o: { table?: boolean }) =>
      withLocalKms(async (kms) => {
        const { items } = await pageInstances(kms.deps, { pageNumber: 1, pageSize: 1000 }, systemCaller);
        const rows = [];
        for (const i of items) {
          // Every key version consumes one unit (seed 002): the same count the quota check reads.
          const [keyQuota] = await instanceQuotaInfos(kms.deps, i.id, systemCaller, 'key');
          rows.push({ InstanceId: i.id, Type: i.type, KeyQuota: i.keyQuota, UsedKeys: keyQuota?.usedQuantity ?? 0, Qps: i.qps });
        }
        print(rows, o);
      }),
    );
  instance
    .command('describe <instanceId>')
    .option('--table', 'print a table instead of JSON')
    .action(async (id: string, o: { table?: boolean }) =>
      withLocalKms(async (kms) => print(kmsInstance(await describeInstance(kms.deps, id, systemCaller), kms.deps.config), o)),
    );
  instance
    .command('update <instanceId>')
    .option('--key-quota <n>', 'new key quota', integer('--key-quota'))
    .option('--qps <n>', 'new QPS', integer('--qps'))
    .option('--table', 'print a table instead of JSON')
    .action(async (id: string, o: { keyQuota?: number; qps?: number; table?: boolean }) =>
      withLocalKms(async (kms) =>
        print(kmsInstance(await updateInstance(kms.deps, id, { keyQuota: o.keyQuota, qps: o.qps }, systemCaller), kms.deps.config), o),
      ),
    );
}
