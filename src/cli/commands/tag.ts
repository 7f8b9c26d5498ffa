import type { Command } from 'commander';
import { type ConnectionFlags, clientCommand, keyValuePairs, listAt, runClientVerb } from '../client.js';

/** `kms tag …`: key tags through the RPC API (alibaba-api.md §3.5, §5.7): at most 20 per key. */
export function register(program: Command): void {
  const tag = program.command('tag').description('key tags (signed RPC calls)');
  const tagsOf = async (client: { call: (a: string, p: Record<string, string>) => Promise<Record<string, unknown>> }, keyId: string) =>
    listAt<{ TagKey: string; TagValue: string }>(await client.call('ListResourceTags', { KeyId: keyId }), 'Tags', 'Tag').map((t) => ({
      TagKey: t.TagKey,
      TagValue: t.TagValue,
    }));

  clientCommand(tag.command('add <keyId> <key=value...>').description('TagResource: add or overwrite tags; prints the key\'s tags')).action(
    (keyId: string, pairs: string[], o: ConnectionFlags) =>
      runClientVerb(o, async (client) => {
        await client.call('TagResource', { KeyId: keyId, Tags: JSON.stringify(keyValuePairs(pairs)) });
        return tagsOf(client, keyId);
      }),
  );

  clientCommand(tag.command('remove <keyId> <tagKey...>').description('UntagResource; prints the key\'s remaining tags')).action(
    (keyId: string, tagKeys: string[], o: ConnectionFlags) =>
      runClientVerb(o, async (client) => {
        await client.call('UntagResource', { KeyId: keyId, TagKeys: JSON.stringify(tagKeys) });
        return tagsOf(client, keyId);
      }),
  );

  clientCommand(tag.command('list <keyId>').description('ListResourceTags')).action((keyId: string, o: ConnectionFlags) =>
    runClientVerb(o, (client) => tagsOf(client, keyId)),
  );
}
