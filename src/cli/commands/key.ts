import type { Command } from 'commander';
import { type ConnectionFlags, type KmsClient, allPages, clientCommand, keyValuePairs, listAt, runClientVerb } from '../client.js';

/**
 * `kms key …`: the key lifecycle through the RPC API (alibaba-api.md §3.1, §3.3). Verbs that
 * change a key print its metadata afterwards, so the new state (and DeleteDate) is visible.
 */

const collect = (value: string, previous: string[]) => [...previous, value];
const integer = (name: string) => (value: string) => {
  if (!/^\d+$/.test(value)) throw new Error(`${name} must be a whole number`);
  return Number(value);
};

async function metadata(client: KmsClient, keyId: string): Promise<Record<string, unknown>> {
  return (await client.call('DescribeKey', { KeyId: keyId })).KeyMetadata as Record<string, unknown>;
}

/** Calls `action` on the key, then describes it. */
function changeThenDescribe(client: KmsClient, action: string, keyId: string, params: Record<string, string | number | boolean | undefined> = {}) {
  return client.call(action, { KeyId: keyId, ...params }).then(() => metadata(client, keyId));
}

/** `key list --table`: one DescribeKey per key (8 at a time), in ListKeys' order. */
async function describedRows(client: KmsClient, keys: ReadonlyArray<{ KeyId: string }>): Promise<Array<Record<string, unknown>>> {
  const rows: Array<Record<string, unknown>> = new Array(keys.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < keys.length; i = next++) {
      const m = await metadata(client, keys[i]!.KeyId);
      rows[i] = {
        KeyId: m.KeyId,
        State: m.KeyState,
        Spec: m.KeySpec,
        Usage: m.KeyUsage,
        Protection: m.ProtectionLevel,
        Instance: m.DKMSInstanceId ?? '',
        Description: m.Description ?? '',
      };
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, keys.length) }, worker));
  return rows;
}

interface CreateFlags extends ConnectionFlags {
  instance?: string;
  spec?: string;
  usage?: string;
  origin?: string;
  protectionLevel?: string;
  description?: string;
  rotationInterval?: string;
  storageMechanism?: string;
  tag: string[];
}

interface ListFlags extends ConnectionFlags {
  page?: number;
  pageSize?: number;
  state: string[];
  spec: string[];
  protectionLevel: string[];
  instance: string[];
  filters?: string;
}

/** `--state`/`--spec`/… become ListKeys `Filters` (§3.1); `--filters` passes raw JSON instead. */
function filtersOf(o: ListFlags): string | undefined {
  if (o.filters !== undefined) return o.filters;
  const filters = (
    [
      ['KeyState', o.state],
      ['KeySpec', o.spec],
      ['ProtectionLevel', o.protectionLevel],
      ['DKMSInstanceId', o.instance],
    ] as const
  )
    .filter(([, values]) => values.length > 0)
    .map(([Key, Values]) => ({ Key, Values }));
  return filters.length > 0 ? JSON.stringify(filters) : undefined;
}

export function register(program: Command): void {
  const key = program.command('key').description('keys: create, inspect and manage their lifecycle (signed RPC calls)');

  clientCommand(key.command('create').description('CreateKey'))
    .option('--instance <kmsInstanceId>', 'DKMSInstanceId (omit for a default key)')
    .option('--spec <keySpec>', 'Aliyun_AES_256 (default), Aliyun_AES_192 or Aliyun_AES_128 (HSM instances), RSA_2048, RSA_3072, EC_P256, EC_P256K, HMAC_SHA224/256/384/512')
    .option('--usage <keyUsage>', 'ENCRYPT/DECRYPT, SIGN/VERIFY or GENERATE/VERIFY_MAC (default: by the spec)')
    .option('--origin <origin>', 'Aliyun_KMS (default) or EXTERNAL (BYOK: the key waits in PendingImport)')
    .option('--protection-level <level>', 'SOFTWARE or HSM (decided by the instance when --instance is given)')
    .option('--description <text>', 'description')
    .option('--rotation-interval <interval>', 'enable automatic rotation every 7d … 365d (Nd, Nh, Nm or Ns)')
    .option('--storage-mechanism <mechanism>', 'HsmInternal (HSM instances)')
    .option('--tag <key=value>', 'a tag (repeat for more, at most 20)', collect, [])
    .action((o: CreateFlags) =>
      runClientVerb(o, async (client) => {
        const created = await client.call('CreateKey', {
          DKMSInstanceId: o.instance,
          KeySpec: o.spec,
          KeyUsage: o.usage,
          Origin: o.origin,
          ProtectionLevel: o.protectionLevel,
          Description: o.description,
          EnableAutomaticRotation: o.rotationInterval !== undefined ? true : undefined,
          RotationInterval: o.rotationInterval,
          KeyStorageMechanism: o.storageMechanism,
          Tags: o.tag.length > 0 ? JSON.stringify(keyValuePairs(o.tag)) : undefined,
        });
        return created.KeyMetadata;
      }),
    );

  clientCommand(key.command('describe <keyId>').description('DescribeKey (a key id, alias/… or ARN)')).action((keyId: string, o: ConnectionFlags) =>
    runClientVerb(o, (client) => metadata(client, keyId)),
  );

  clientCommand(key.command('list').description('ListKeys: every page unless --page is given; --table describes each key (State, Spec, Usage, Protection, Instance, Description)'))
    .option('--page <n>', 'only this page', integer('--page'))
    .option('--page-size <n>', 'page size with --page (1–100)', integer('--page-size'))
    .option('--state <state>', 'KeyState filter (repeatable)', collect, [])
    .option('--spec <keySpec>', 'KeySpec filter (repeatable)', collect, [])
    .option('--protection-level <level>', 'ProtectionLevel filter (repeatable)', collect, [])
    .option('--instance <kmsInstanceId>', 'DKMSInstanceId filter (repeatable)', collect, [])
    .option('--filters <json>', 'raw Filters JSON, e.g. [{"Key":"KeyState","Values":["Enabled"]}]')
    .action((o: ListFlags) =>
      runClientVerb(o, async (client) => {
        const Filters = filtersOf(o);
        const keys =
          o.page !== undefined
            ? listAt<{ KeyId: string }>(await client.call('ListKeys', { PageNumber: o.page, PageSize: o.pageSize, Filters }), 'Keys', 'Key')
            : await allPages(
                (PageNumber, PageSize) => client.call('ListKeys', { PageNumber, PageSize, Filters }),
                (body) => listAt<{ KeyId: string }>(body, 'Keys', 'Key'),
              );
        // JSON stays ListKeys' own answer; a table is for reading, so it shows what each key is.
        return o.table === true ? describedRows(client, keys) : keys;
      }),
    );

  for (const [verb, action, description] of [
    ['enable', 'EnableKey', 'EnableKey'],
    ['disable', 'DisableKey', 'DisableKey: encryption and decryption stop until it is enabled'],
    ['cancel-deletion', 'CancelKeyDeletion', 'CancelKeyDeletion: back to Enabled (PendingImport for a BYOK key without material)'],
  ] as const) {
    clientCommand(key.command(`${verb} <keyId>`).description(description)).action((keyId: string, o: ConnectionFlags) =>
      runClientVerb(o, (client) => changeThenDescribe(client, action, keyId)),
    );
  }

  clientCommand(key.command('schedule-deletion <keyId>').description('ScheduleKeyDeletion: PendingDeletion, deleted after the window'))
    .requiredOption('--days <n>', 'PendingWindowInDays, 7–366', integer('--days'))
    .action((keyId: string, o: ConnectionFlags & { days: number }) =>
      runClientVerb(o, (client) => changeThenDescribe(client, 'ScheduleKeyDeletion', keyId, { PendingWindowInDays: o.days })),
    );

  clientCommand(key.command('set-deletion-protection <keyId>').description('SetDeletionProtection: --enable or --disable'))
    .option('--enable', 'protect the key from ScheduleKeyDeletion')
    .option('--disable', 'remove the protection')
    .option('--description <text>', 'why the key is protected')
    .action((keyId: string, o: ConnectionFlags & { enable?: boolean; disable?: boolean; description?: string }) => {
      if (o.enable === o.disable) throw new Error('give exactly one of --enable or --disable');
      return runClientVerb(o, (client) =>
        changeThenDescribe(client, 'SetDeletionProtection', keyId, {
          EnableDeletionProtection: o.enable === true,
          DeletionProtectionDescription: o.description,
        }),
      );
    });

  clientCommand(key.command('update-description <keyId> <description>').description('UpdateKeyDescription ("" clears it)')).action(
    (keyId: string, description: string, o: ConnectionFlags) =>
      runClientVerb(o, (client) => changeThenDescribe(client, 'UpdateKeyDescription', keyId, { Description: description })),
  );

  clientCommand(key.command('rotate <keyId>').description('CreateKeyVersion: rotate now (a BYOK key: rotate in the material imported with --new-material)')).action(
    (keyId: string, o: ConnectionFlags) => runClientVerb(o, (client) => changeThenDescribe(client, 'CreateKeyVersion', keyId)),
  );

  clientCommand(key.command('set-rotation <keyId>').description('UpdateRotationPolicy: --interval 30d to rotate automatically, --off to stop'))
    .option('--interval <period>', 'RotationInterval, integer[d|h|m|s], 7–365 days (default keys: 365d, fixed)')
    .option('--off', 'turn automatic rotation off')
    .action((keyId: string, o: ConnectionFlags & { interval?: string; off?: boolean }) => {
      if ((o.interval !== undefined) === (o.off === true)) throw new Error('give exactly one of --interval or --off');
      return runClientVerb(o, (client) =>
        changeThenDescribe(client, 'UpdateRotationPolicy', keyId, { EnableAutomaticRotation: o.off !== true, RotationInterval: o.interval }),
      );
    });

  clientCommand(key.command('versions <keyId>').description('ListKeyVersions: every version, oldest first')).action((keyId: string, o: ConnectionFlags) =>
    runClientVerb(o, (client) =>
      allPages(
        (PageNumber, PageSize) => client.call('ListKeyVersions', { KeyId: keyId, PageNumber, PageSize }),
        (body) => listAt(body, 'KeyVersions', 'KeyVersion'),
      ),
    ),
  );
}
