import type { Command } from 'commander';
import { type ConnectionFlags, clientCommand, runClientVerb } from '../client.js';
import { plaintextOutput, plaintextParameter, readCiphertextBlob, readPayload, runPayloadVerb } from '../payload-io.js';

/**
 * `kms encrypt | decrypt | data-key | re-encrypt | random`: the crypto actions a shell user
 * needs for envelope encryption (alibaba-api.md §3.4; docs/cli.md "Encryption and data keys").
 *
 *   kms data-key K > dk.json                          # GenerateDataKey: Plaintext + CiphertextBlob
 *   jq -r .Plaintext dk.json | base64 -d > dk.bin     # the data key, to encrypt locally
 *   kms decrypt dk.json > dk.bin                      # later: the same key back from its blob
 */

const integer = (name: string) => (value: string) => {
  if (!/^\d+$/.test(value)) throw new Error(`${name} must be a whole number`);
  return Number(value);
};

interface PayloadFlags extends ConnectionFlags {
  context?: string;
  base64?: boolean;
}

export function register(program: Command): void {
  clientCommand(program.command('encrypt <keyId> [file]').description('Encrypt FILE (or stdin): prints {KeyId, KeyVersionId, CiphertextBlob}'))
    .option('--context <json>', 'EncryptionContext, a JSON object of strings')
    .option('--base64', 'the input is base64 text, sent as Plaintext as it is (default: raw bytes, sent base64-encoded)')
    .action((keyId: string, file: string | undefined, o: PayloadFlags) =>
      runClientVerb(o, async (client) => {
        const input = await readPayload(file);
        return client.call('Encrypt', { KeyId: keyId, Plaintext: plaintextParameter(input, o.base64 === true), EncryptionContext: o.context });
      }),
    );

  clientCommand(
    program
      .command('decrypt [blob]')
      .description('Decrypt a CiphertextBlob (the blob, a file holding it or a verb\'s JSON output, or stdin): writes the plaintext bytes'),
  )
    .option('--context <json>', 'EncryptionContext given at encryption')
    .option('--base64', 'write Plaintext as base64 text, as the API returns it (default: the decoded bytes)')
    .action((blob: string | undefined, o: PayloadFlags) =>
      runPayloadVerb(o, async (call) => {
        const CiphertextBlob = await readCiphertextBlob(blob);
        const result = await call('Decrypt', { CiphertextBlob, EncryptionContext: o.context });
        return plaintextOutput(String(result.Plaintext ?? ''), o.base64 === true);
      }),
    );

  clientCommand(program.command('data-key <keyId>').description('GenerateDataKey: prints {KeyId, KeyVersionId, Plaintext (base64), CiphertextBlob}'))
    .option('--bytes <n>', 'NumberOfBytes, 1–1024 (default 32)', integer('--bytes'))
    .option('--spec <keySpec>', 'KeySpec AES_256 (default) or AES_128; --bytes wins')
    .option('--context <json>', 'EncryptionContext')
    .option('--without-plaintext', 'GenerateDataKeyWithoutPlaintext: only the CiphertextBlob')
    .action((keyId: string, o: ConnectionFlags & { bytes?: number; spec?: string; context?: string; withoutPlaintext?: boolean }) =>
      runClientVerb(o, (client) =>
        client.call(o.withoutPlaintext ? 'GenerateDataKeyWithoutPlaintext' : 'GenerateDataKey', {
          KeyId: keyId,
          NumberOfBytes: o.bytes,
          KeySpec: o.spec,
          EncryptionContext: o.context,
        }),
      ),
    );

  clientCommand(
    program
      .command('re-encrypt [blob]')
      .description('ReEncrypt a CiphertextBlob (as for decrypt) under another key, inside the service: prints {KeyId, KeyVersionId, CiphertextBlob}'),
  )
    .requiredOption('--to <keyId>', 'DestinationKeyId')
    .option('--source-context <json>', 'SourceEncryptionContext')
    .option('--context <json>', 'DestinationEncryptionContext')
    .action((blob: string | undefined, o: ConnectionFlags & { to: string; sourceContext?: string; context?: string }) =>
      runClientVerb(o, async (client) =>
        client.call('ReEncrypt', {
          CiphertextBlob: await readCiphertextBlob(blob),
          SourceEncryptionContext: o.sourceContext,
          DestinationKeyId: o.to,
          DestinationEncryptionContext: o.context,
        }),
      ),
    );

  clientCommand(program.command('random').description('GetRandomPassword (the HSM RNG): prints {RandomPassword}'))
    .option('--length <n>', 'PasswordLength, 8–128 (default 32)', integer('--length'))
    .option('--exclude <chars>', 'ExcludeCharacters')
    .option('--no-lowercase', 'ExcludeLowercase')
    .option('--no-uppercase', 'ExcludeUppercase')
    .option('--no-numbers', 'ExcludeNumbers')
    .option('--no-punctuation', 'ExcludePunctuation')
    .option('--any-types', 'RequireEachIncludedType=false: a type may be missing')
    .action(
      (o: ConnectionFlags & { length?: number; exclude?: string; lowercase: boolean; uppercase: boolean; numbers: boolean; punctuation: boolean; anyTypes?: boolean }) =>
        runClientVerb(o, (client) =>
          client.call('GetRandomPassword', {
            PasswordLength: o.length,
            ExcludeCharacters: o.exclude,
            ExcludeLowercase: o.lowercase ? undefined : true,
            ExcludeUppercase: o.uppercase ? undefined : true,
            ExcludeNumbers: o.numbers ? undefined : true,
            ExcludePunctuation: o.punctuation ? undefined : true,
            RequireEachIncludedType: o.anyTypes ? false : undefined,
          }),
        ),
    );
}
