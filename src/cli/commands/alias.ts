import type { Command } from 'commander';
import { type ConnectionFlags, allPages, clientCommand, listAt, runClientVerb } from '../client.js';

/** `kms alias …`: aliases through the RPC API (alibaba-api.md §3.5, §5.6). Names start with `alias/`. */
export function register(program: Command): void {
  const alias = program.command('alias').description('aliases: alias/… names bound to one key each (signed RPC calls)');

  clientCommand(alias.command('create <aliasName> <keyId>').description('CreateAlias')).action((aliasName: string, keyId: string, o: ConnectionFlags) =>
    runClientVerb(o, async (client) => {
      await client.call('CreateAlias', { AliasName: aliasName, KeyId: keyId });
      return { AliasName: aliasName, KeyId: keyId };
    }),
  );

  clientCommand(alias.command('update <aliasName> <keyId>').description('UpdateAlias: bind the alias to another key')).action(
    (aliasName: string, keyId: string, o: ConnectionFlags) =>
      runClientVerb(o, async (client) => {
        await client.call('UpdateAlias', { AliasName: aliasName, KeyId: keyId });
        return { AliasName: aliasName, KeyId: keyId };
      }),
  );

  clientCommand(alias.command('delete <aliasName>').description('DeleteAlias')).action((aliasName: string, o: ConnectionFlags) =>
    runClientVerb(o, async (client) => {
      await client.call('DeleteAlias', { AliasName: aliasName });
      return { AliasName: aliasName, Deleted: true };
    }),
  );

  clientCommand(alias.command('list').description('ListAliases, or ListAliasesByKeyId with --key'))
    .option('--key <keyId>', 'only the aliases of this key')
    .action((o: ConnectionFlags & { key?: string }) =>
      runClientVerb(o, (client) =>
        allPages(
          (PageNumber, PageSize) =>
            o.key === undefined
              ? client.call('ListAliases', { PageNumber, PageSize })
              : client.call('ListAliasesByKeyId', { KeyId: o.key, PageNumber, PageSize }),
          (body) => listAt(body, 'Aliases', 'Alias'),
        ),
      ),
    );
}
