import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type Command, Option } from 'commander';
import { WRAPPING_ALGORITHMS, type WrappingAlgorithm } from '../../domain/byok.js';
import { type ConnectionFlags, type KmsClient, clientCommand, runClientVerb } from '../client.js';
import { publicKeyPem, wrapKeyMaterial } from '../wrap-material.js';

/**
 * The seed's (000) four steps from a shell:
 *   1. `kms key create --origin EXTERNAL [--instance kst-…]` (or any SDK);
 *   2. `kms import-params KEY --algorithm … --out DIR` → PublicKey.bin (DER), PublicKey.pem, token.txt;
 *   3. `kms wrap-material --public-key DIR/PublicKey.bin --algorithm … --in KeyMaterial.bin`
 *      (or the seed's openssl lines) → EncryptedKeyMaterial_base64.txt, locally;
 *   4. `kms import-material KEY --material-file … --token-file …`.
 * and `kms delete-material KEY`. Steps 2, 4 and deletion call the API like the SDK does
 * (connection flags and credentials as every client verb: cli/client.ts).
 */

async function keyState(client: KmsClient, keyId: string): Promise<Record<string, unknown>> {
  const metadata = (await client.call('DescribeKey', { KeyId: keyId })).KeyMetadata as Record<string, unknown>;
  return { KeyId: metadata.KeyId, KeyState: metadata.KeyState, MaterialExpireTime: metadata.MaterialExpireTime };
}

const algorithmOption = () =>
  new Option('--algorithm <algorithm>', 'wrapping algorithm').choices([...WRAPPING_ALGORITHMS]).makeOptionMandatory();

export function registerByokCommands(program: Command): void {
  clientCommand(
    program
      .command('import-params <keyId>')
      .description('seed 000 step 2: download the wrapping public key (PublicKey.bin DER, PublicKey.pem) and the import token (token.txt)')
      .addOption(algorithmOption())
      .option('--wrapping-key-spec <spec>', 'wrapping key spec', 'RSA_2048')
      .requiredOption('--out <dir>', 'directory for PublicKey.bin, PublicKey.pem and token.txt'),
  ).action((keyId: string, o: ConnectionFlags & { algorithm: WrappingAlgorithm; wrappingKeySpec: string; out: string }) =>
    runClientVerb(o, async (client) => {
      const result = await client.call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: o.wrappingKeySpec, WrappingAlgorithm: o.algorithm });
      const der = Buffer.from(String(result.PublicKey), 'base64');
      await mkdir(o.out, { recursive: true });
      const files = {
        PublicKeyDer: path.join(o.out, 'PublicKey.bin'),
        PublicKeyPem: path.join(o.out, 'PublicKey.pem'),
        ImportToken: path.join(o.out, 'token.txt'),
      };
      await writeFile(files.PublicKeyDer, der);
      await writeFile(files.PublicKeyPem, publicKeyPem(der));
      // The token is useless without the matching private key, but it is an import credential: 0600.
      await writeFile(files.ImportToken, String(result.ImportToken), { mode: 0o600 });
      await chmod(files.ImportToken, 0o600);
      return { KeyId: result.KeyId, WrappingAlgorithm: o.algorithm, TokenExpireTime: result.TokenExpireTime, Files: files };
    }),
  );

  program
    .command('wrap-material')
    .description('seed 000 step 3, locally: encrypt key material with the wrapping public key (PEM or DER); prints or writes base64')
    .requiredOption('--public-key <file>', 'PublicKey.bin (DER) or PublicKey.pem')
    .addOption(algorithmOption())
    .requiredOption('--in <file>', 'the raw key material, e.g. KeyMaterial.bin (32 bytes for Aliyun_AES_256)')
    .option('--out <file>', 'write the base64 here (as `openssl enc -e -base64 -A` does) instead of printing it')
    .action(async (o: { publicKey: string; algorithm: WrappingAlgorithm; in: string; out?: string }) => {
      const material = await readFile(o.in);
      try {
        if (![16, 24, 32].includes(material.length)) {
          throw new Error(`${o.in} holds ${material.length} bytes; key material is 32 bytes (Aliyun_AES_256), 24 or 16.`);
        }
        const wrapped = wrapKeyMaterial(await readFile(o.publicKey), o.algorithm, material).toString('base64');
        if (o.out) await writeFile(o.out, wrapped);
        else process.stdout.write(`${wrapped}\n`);
      } finally {
        material.fill(0);
      }
    });

  clientCommand(
    program
      .command('import-material <keyId>')
      .description('seed 000 step 4: import the encrypted key material with its import token')
      .requiredOption('--material-file <file>', 'EncryptedKeyMaterial_base64.txt')
      .requiredOption('--token-file <file>', 'token.txt from the same download as the public key')
      .option('--expire-unix <seconds>', 'when KMS deletes the material (Unix seconds); 0 or absent: never', (v) => {
        if (!/^\d+$/.test(v)) throw new Error('--expire-unix must be Unix seconds');
        return Number(v);
      })
      .option('--new-material', 'seed 002: new material for a rotation (ImportType=NEW_KEY_MATERIAL): a new version in PendingRotation; rotate it in with `kms key rotate`'),
  ).action((keyId: string, o: ConnectionFlags & { materialFile: string; tokenFile: string; expireUnix?: number; newMaterial?: boolean }) =>
    runClientVerb(o, async (client) => {
      const [encrypted, token] = await Promise.all([readFile(o.materialFile, 'utf8'), readFile(o.tokenFile, 'utf8')]);
      await client.call('ImportKeyMaterial', {
        KeyId: keyId,
        EncryptedKeyMaterial: encrypted.trim(),
        ImportToken: token.trim(),
        KeyMaterialExpireUnix: o.expireUnix,
        ImportType: o.newMaterial ? 'NEW_KEY_MATERIAL' : undefined,
      });
      return keyState(client, keyId);
    }),
  );

  clientCommand(
    program
      .command('delete-material <keyId>')
      .description('delete imported key material now (the key goes to PendingImport; the same material can be imported again)'),
  ).action((keyId: string, o: ConnectionFlags) =>
    runClientVerb(o, async (client) => {
      await client.call('DeleteKeyMaterial', { KeyId: keyId });
      return keyState(client, keyId);
    }),
  );
}
