import type { Command } from 'commander';
import { type ConnectionFlags, clientCommand } from '../client.js';
import { runPayloadVerb } from '../payload-io.js';
import { algorithmFor, bytesOutput, digestOf, readBytesFile, verificationOutput } from '../signature-io.js';

/**
 * `kms public-key | sign | verify`: asymmetric keys from a shell (alibaba-api.md §3.4;
 * docs/cli.md "Signatures and MACs"). The signature is what openssl verifies:
 *
 *   kms public-key K --version V > pub.pem
 *   kms sign K --version V msg.txt > sig.bin
 *   openssl dgst -sha256 -verify pub.pem -signature sig.bin msg.txt
 */

interface SignFlags extends ConnectionFlags {
  version: string;
  algorithm?: string;
  digestFile?: string;
  base64?: boolean;
}

export function register(program: Command): void {
  clientCommand(program.command('public-key <keyId>').description('GetPublicKey: writes the version\'s public key as PEM (SubjectPublicKeyInfo)'))
    .requiredOption('--version <versionId>', 'KeyVersionId')
    .action((keyId: string, o: ConnectionFlags & { version: string }) =>
      runPayloadVerb(o, async (call) => {
        const result = await call('GetPublicKey', { KeyId: keyId, KeyVersionId: o.version });
        const pem = String(result.PublicKey ?? '');
        return Buffer.from(pem.endsWith('\n') ? pem : `${pem}\n`, 'utf8');
      }),
    );

  clientCommand(
    program
      .command('sign <keyId> [file]')
      .description('AsymmetricSign the SHA-256 of FILE (or stdin), or a --digest-file: writes the signature bytes (DER for ECDSA, as openssl expects)'),
  )
    .requiredOption('--version <versionId>', 'KeyVersionId')
    .option('--algorithm <algorithm>', 'RSA_PKCS1_SHA_256 | RSA_PSS_SHA_256 | ECDSA_SHA_256 (default: RSA_PKCS1_SHA_256 for RSA keys, ECDSA_SHA_256 for EC keys)')
    .option('--digest-file <file>', 'sign this 32-byte SHA-256 digest instead of hashing a message')
    .option('--base64', 'write the signature as base64 text (and read --digest-file as base64)')
    .action((keyId: string, file: string | undefined, o: SignFlags) =>
      runPayloadVerb(o, async (call) => {
        const base64 = o.base64 === true;
        const digest = await digestOf(file, o.digestFile, base64);
        const Algorithm = await algorithmFor(call, keyId, o.algorithm, 'sign');
        const result = await call('AsymmetricSign', { KeyId: keyId, KeyVersionId: o.version, Algorithm, Digest: digest.toString('base64') });
        return bytesOutput(Buffer.from(String(result.Value ?? ''), 'base64'), base64);
      }),
    );

  clientCommand(
    program
      .command('verify <keyId> [file]')
      .description('AsymmetricVerify a signature over the SHA-256 of FILE (or stdin), or a --digest-file: prints "Verified OK" (exit 0) or "Verification failure" (exit 1)'),
  )
    .requiredOption('--version <versionId>', 'KeyVersionId')
    .requiredOption('--signature <file>', 'the signature (raw bytes; base64 text with --base64)')
    .option('--algorithm <algorithm>', 'as for sign')
    .option('--digest-file <file>', 'verify over this 32-byte SHA-256 digest instead of hashing a message')
    .option('--base64', 'the signature (and --digest-file) are base64 text')
    .action((keyId: string, file: string | undefined, o: SignFlags & { signature: string }) =>
      runPayloadVerb(o, async (call) => {
        const base64 = o.base64 === true;
        const signature = await readBytesFile(o.signature, base64, 'signature');
        const digest = await digestOf(file, o.digestFile, base64);
        const Algorithm = await algorithmFor(call, keyId, o.algorithm, 'sign');
        const result = await call('AsymmetricVerify', {
          KeyId: keyId,
          KeyVersionId: o.version,
          Algorithm,
          Digest: digest.toString('base64'),
          Value: signature.toString('base64'),
        });
        return verificationOutput(result.Value === true);
      }),
    );
}
