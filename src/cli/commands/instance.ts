import type { Command } from 'commander';
import { withLocalKms } from '../local-kms.js';
import { print } from '../output.js';

const integer = (name: string) => (value: string) => {
  if (!/^\d+$/.test(value)) throw new Error(`${name} must be a whole number`);
  return Number(value);
};

/** The services and the presenter, loaded when a verb runs (cli/kms.ts: start-up stays light). */
const load = async () => {
  const [services, { kmsInstance }, { systemCaller }] = await Promise.all([
    import('../../services/instances.js'),
    import('../../api/presenters.js'),
    import('../../services/context.js'),
  ]);
  return { ...services, kmsInstance, systemCaller };
};

export function register(program: Command): void {
  const instance = program
    .command('instance')
    .description('KMS instances: HSM or SOFTWARE key stores with a key quota and a QPS (operator commands on the local store)');
  instance
    .command('create')
    .description('CreateKmsInstance: a new HSM or SOFTWARE instance (prints it; its InstanceId is kst-…)')
    .requiredOption('--type <type>', 'HSM or SOFTWARE')
    .requiredOption('--key-quota <n>', 'key versions the instance may hold', integer('--key-quota'))
    .requiredOption('--qps <n>', 'requests per second', integer('--qps'))
    .option('--name <name>', 'a display name')
    .option(
      '--key-storage-mechanism <mechanism>',
      'HSM instances: HsmInternal (default; a token object per key version) or HsmEncryptedDatabase (version keys wrapped under the HSM master key, in Postgres; for many versions)',
    )
    .option('--table', 'print Field/Value rows instead of JSON')
    .action(async (o: { type: string; keyQuota: number; qps: number; name?: string; keyStorageMechanism?: string; table?: boolean }) => {
      const type = o.type.toUpperCase();
      if (type !== 'HSM' && type !== 'SOFTWARE') throw new Error('--type must be HSM or SOFTWARE');
      const mechanism = o.keyStorageMechanism;
      if (mechanism !== undefined && mechanism !== 'HsmInternal' && mechanism !== 'HsmEncryptedDatabase') {
        throw new Error('--key-storage-mechanism must be HsmInternal or HsmEncryptedDatabase');
      }
      const { createInstance, kmsInstance, systemCaller } = await load();
      await withLocalKms(async (kms) => {
        const created = await createInstance(kms.deps, { type, keyQuota: o.keyQuota, qps: o.qps, name: o.name, keyStorageMechanism: mechanism }, systemCaller);
        print(kmsInstance(created, kms.deps.config), o);
      });
    });
  instance
    .command('ensure-defaults')
    .description('create hsm-default (HSM) and software-default (SOFTWARE) unless instances of those types exist, as the quickstart and the container do')
    .option('--table', 'print Field/Value rows instead of JSON')
    .action(async (o: { table?: boolean }) => {
      const { ensureDefaultInstances } = await import('../../services/bootstrap.js');
      await withLocalKms(async (kms) => {
        const ids = await ensureDefaultInstances(kms.deps);
        print({ HsmInstanceId: ids.hsm, SoftwareInstanceId: ids.software }, o);
      });
    });
  instance
    .command('list')
    .description('every instance with its type, name, key quota and use, and QPS')
    .option('--table', 'print a table instead of JSON')
    .action(async (o: { table?: boolean }) => {
      const { instanceQuotaInfos, pageInstances, systemCaller } = await load();
      await withLocalKms(async (kms) => {
        const { items } = await pageInstances(kms.deps, { pageNumber: 1, pageSize: 1000 }, systemCaller);
        const rows = [];
        for (const i of items) {
          // Every key version consumes one unit (seed 002): the same count the quota check reads.
          const [keyQuota] = await instanceQuotaInfos(kms.deps, i.id, systemCaller, 'key');
          rows.push({ InstanceId: i.id, Type: i.type, Name: i.name, KeyQuota: i.keyQuota, UsedKeys: keyQuota?.usedQuantity ?? 0, Qps: i.qps });
        }
        print(rows, o);
      });
    });
  instance
    .command('describe <instanceId>')
    .description('GetKmsInstance: one instance, every field')
    .option('--table', 'print Field/Value rows instead of JSON')
    .action(async (id: string, o: { table?: boolean }) => {
      const { describeInstance, kmsInstance, systemCaller } = await load();
      await withLocalKms(async (kms) => print(kmsInstance(await describeInstance(kms.deps, id, systemCaller), kms.deps.config), o));
    });
  instance
    .command('update <instanceId>')
    .description('resize an instance: a new key quota and/or QPS')
    .option('--key-quota <n>', 'new key quota', integer('--key-quota'))
    .option('--qps <n>', 'new QPS', integer('--qps'))
    .option('--table', 'print Field/Value rows instead of JSON')
    .action(async (id: string, o: { keyQuota?: number; qps?: number; table?: boolean }) => {
      const { kmsInstance, systemCaller, updateInstance } = await load();
      await withLocalKms(async (kms) =>
        print(kmsInstance(await updateInstance(kms.deps, id, { keyQuota: o.keyQuota, qps: o.qps }, systemCaller), kms.deps.config), o),
      );
    });
}
