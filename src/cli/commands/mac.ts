import type { Command } from 'commander';
import { type ConnectionFlags, clientCommand } from '../client.js';
import { readPayload, runPayloadVerb } from '../payload-io.js';
import { algorithmFor, bytesOutput, readBytesFile, verificationOutput } from '../signature-io.js';

/**
 * `kms mac`: GenerateMac / VerifyMac from a shell (alibaba-api.md §3.4; docs/cli.md
 * "Signatures and MACs"). The message is FILE or stdin, raw bytes, at most 4096 of them.
 *
 *   kms mac K msg.txt > msg.mac
 *   kms mac K msg.txt --verify msg.mac     # "Verified OK", exit 0
 */
export function register(program: Command): void {
  clientCommand(
    program
      .command('mac <keyId> [file]')
      .description('GenerateMac over FILE (or stdin): writes the MAC bytes; with --verify MACFILE, VerifyMac: prints "Verified OK" (exit 0) or "Verification failure" (exit 1)'),
  )
    .option('--algorithm <algorithm>', 'HMAC_SHA_224 | HMAC_SHA_256 | HMAC_SHA_384 | HMAC_SHA_512 (default: the one the key\'s spec fixes)')
    .option('--verify <macFile>', 'verify this MAC (raw bytes; base64 text with --base64) instead of writing one')
    .option('--base64', 'write (or read with --verify) the MAC as base64 text')
    .action((keyId: string, file: string | undefined, o: ConnectionFlags & { algorithm?: string; verify?: string; base64?: boolean }) =>
      runPayloadVerb(o, async (call) => {
        const base64 = o.base64 === true;
        const presented = o.verify === undefined ? undefined : await readBytesFile(o.verify, base64, 'MAC');
        const Message = (await readPayload(file, 'message')).toString('base64');
        const Algorithm = await algorithmFor(call, keyId, o.algorithm, 'mac');
        if (presented !== undefined) {
          const result = await call('VerifyMac', { KeyId: keyId, Algorithm, Message, Mac: presented.toString('base64') });
          return verificationOutput(result.Value === true);
        }
        const result = await call('GenerateMac', { KeyId: keyId, Algorithm, Message });
        return bytesOutput(Buffer.from(String(result.Mac ?? ''), 'base64'), base64);
      }),
    );
}
