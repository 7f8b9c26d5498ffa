import type { Command } from 'commander';
import { withLocalKms } from '../local-kms.js';
import { print } from '../output.js';

/** The services, loaded when a verb runs (cli/kms.ts: start-up stays light). Changes go through
 * the same use cases as the API: audited in their transaction, caches invalidated by the store. */
const load = async () => {
  const [{ createAccessKey, setAccessKeyStatus, deleteAccessKey }, { systemCaller }, { listAccessKeys }] = await Promise.all([
    import('../../services/access.js'),
    import('../../services/context.js'),
    import('../../store/access-keys.js'),
  ]);
  return { createAccessKey, setAccessKeyStatus, deleteAccessKey, systemCaller, listAccessKeys };
};

export function register(program: Command): void {
  const accessKey = program
    .command('access-key')
    .description('API access keys: admin or key-user, optionally limited to instances (operator commands on the local store)');
  accessKey
    .command('create')
    .description('a new access key; its secret is printed once and stored only sealed under the HSM root key')
    .option('--role <role>', 'admin or key-user', 'admin')
    .option('--instances <ids>', 'comma-separated instance ids a key-user is limited to')
    .option('--description <text>', 'what the key is for')
    .action(async (o: { role: string; instances?: string; description?: string }) => {
      if (o.role !== 'admin' && o.role !== 'key-user') throw new Error('--role must be admin or key-user');
      const role = o.role;
      const { createAccessKey, systemCaller } = await load();
      await withLocalKms(async (kms) => {
        const created = await createAccessKey(
          kms.deps,
          { role, instanceIds: o.instances?.split(',').map((s) => s.trim()).filter(Boolean), description: o.description },
          systemCaller,
        );
        // The secret is printed once, to the operator who asked for it; it is stored only sealed.
        print({ AccessKeyId: created.accessKeyId, AccessKeySecret: created.accessKeySecret, Role: created.role, InstanceIds: created.instanceIds });
      });
    });
  accessKey
    .command('list')
    .description('every access key with its role, instances and status (never a secret)')
    .option('--table', 'print a table instead of JSON')
    .action(async (o: { table?: boolean }) => {
      const { listAccessKeys } = await load();
      await withLocalKms(async (kms) =>
        print(
          (await listAccessKeys(kms.deps.db)).map((a) => ({
            AccessKeyId: a.id,
            Role: a.role,
            InstanceIds: a.instanceIds ?? [],
            Status: a.status,
            Description: a.description,
          })),
          o,
        ),
      );
    });
  for (const [verb, status, description] of [
    ['disable', 'Disabled', 'refuse every request signed with this key (until enabled again)'],
    ['enable', 'Enabled', 'accept requests signed with this key again'],
  ] as const) {
    accessKey
      .command(`${verb} <accessKeyId>`)
      .description(description)
      .action(async (id: string) => {
        const { setAccessKeyStatus, systemCaller } = await load();
        await withLocalKms(async (kms) => {
          await setAccessKeyStatus(kms.deps, id, status, systemCaller);
          print({ AccessKeyId: id, Status: status });
        });
      });
  }
  accessKey
    .command('delete <accessKeyId>')
    .description('delete an access key for good (requests signed with it are refused)')
    .action(async (id: string) => {
      const { deleteAccessKey, systemCaller } = await load();
      await withLocalKms(async (kms) => {
        await deleteAccessKey(kms.deps, id, systemCaller);
        print({ AccessKeyId: id, Deleted: true });
      });
    });
}
