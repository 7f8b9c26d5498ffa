import type { Command } from 'commander';
import { createAccessKey } from '../../services/access.js';
import { systemCaller } from '../../services/context.js';
import { listAccessKeys, setAccessKeyStatus } from '../../store/access-keys.js';
import { withLocalKms } from '../local-kms.js';
import { print } from '../output.js';

export function registerAccessKeyCommands(program: Command): void {
  const accessKey = program.command('access-key').description('API access keys (operator commands on the local store)');
  accessKey
    .command('create')
    .option('--role <role>', 'admin or key-user', 'admin')
    .option('--instances <ids>', 'comma-separated instance ids a key-user is limited to')
    .option('--description <text>', 'what the key is for')
    .action(async (o: { role: string; instances?: string; description?: string }) => {
      if (o.role !== 'admin' && o.role !== 'key-user') throw new Error('--role must be admin or key-user');
      const role = o.role;
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
    .option('--table', 'print a table instead of JSON')
    .action(async (o: { table?: boolean }) =>
      withLocalKms(async (kms) =>
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
      ),
    );
  for (const [verb, status] of [
    ['disable', 'Disabled'],
    ['enable', 'Enabled'],
  ] as const) {
    accessKey.command(`${verb} <accessKeyId>`).action(async (id: string) =>
      withLocalKms(async (kms) => {
        if (!(await setAccessKeyStatus(kms.deps.db, id, status))) throw new Error(`no access key ${id}`);
        print({ AccessKeyId: id, Status: status });
      }),
    );
  }
}
