import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type Command, Option } from 'commander';
import { WRAPPING_ALGORITHMS, type WrappingAlgorithm } from '../../domain/byok.js';
import { type ConnectionFlags, type KmsClient, clientCommand, runClientVerb } from '../client.js';
import { print } from '../output.js';
import { publicKeyPem, wrapKeyMaterial } from '../../domain/client-wrap.js';

/**
 * Bring your own key in four steps from a shell, in a working folder per key (`byok/<key id>/`
 * under the current directory unless `--out` says otherwise; git-ignored in this repo):
 *   1. `kms key create --origin EXTERNAL [--instance kst-…]` (or any SDK);
 *   2. `kms import-params KEY --algorithm …` → byok/KEY/PublicKey.bin (DER), PublicKey.pem, token.txt;
 *   3. `kms wrap-material --public-key byok/KEY/PublicKey.bin --algorithm … --in KeyMaterial.bin
 *      --out byok/KEY/EncryptedKeyMaterial_base64.txt` (or openssl), locally;
 *   4. `kms import-material KEY` (reads those two files; `--material-file` / `--token-file` for others).
 * and `kms delete-material KEY`. Steps 2, 4 and deletion call the API like the SDK does
 * (connection flags and credentials as every client verb: cli/client.ts). Every verb that writes
 * files prints what it wrote.
 */

/** The default working folder of a key's import. */
export const byokFolder = (keyId: string): string => path.join('byok', keyId);

/** What step 3 writes and step 4 reads by default. */
const ENCRYPTED_MATERIAL_FILE = 'EncryptedKeyMaterial_base64.txt';

async function keyState(client: KmsClient, keyId: string): Promise<Record<string, unknown>> {
  const metadata = (await client.call('DescribeKey', { KeyId: keyId })).KeyMetadata as Record<string, unknown>;
  return { KeyId: metadata.KeyId, KeyState: metadata.KeyState, MaterialExpireTime: metadata.MaterialExpireTime };
}

/** A step's input file; a missing one is named with the step that writes it. */
async function readInput(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`no ${what} at ${file}`);
    throw error;
  }
}

const algorithmOption = () =>
  new Option('--algorithm <algorithm>', 'wrapping algorithm').choices([...WRAPPING_ALGORITHMS]).makeOptionMandatory();

export function register(program: Command): void {
  clientCommand(
    program
      .command('import-params <keyId>')
      .description('BYOK step 2: download the wrapping public key (PublicKey.bin DER, PublicKey.pem) and the import token (token.txt) into byok/<key id>/')
      .addOption(algorithmOption())
      .option('--wrapping-key-spec <spec>', 'wrapping key spec', 'RSA_2048')
      .option('--out <dir>', 'folder for PublicKey.bin, PublicKey.pem and token.txt (default: byok/<key id>/)'),
  ).action((keyId: string, o: ConnectionFlags & { algorithm: WrappingAlgorithm; wrappingKeySpec: string; out?: string }) =>
    runClientVerb(o, async (client) => {
      const result = await client.call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: o.wrappingKeySpec, WrappingAlgorithm: o.algorithm });
      const der = Buffer.from(String(result.PublicKey), 'base64');
      const out = o.out ?? byokFolder(String(result.KeyId));
      await mkdir(out, { recursive: true });
      const files = {
        PublicKeyDer: path.join(out, 'PublicKey.bin'),
        PublicKeyPem: path.join(out, 'PublicKey.pem'),
        ImportToken: path.join(out, 'token.txt'),
      };
      await writeFile(files.PublicKeyDer, der);
      await writeFile(files.PublicKeyPem, publicKeyPem(der));
      // The token is useless without the matching private key, but it is an import credential: 0600.
      await writeFile(files.ImportToken, String(result.ImportToken), { mode: 0o600 });
      await chmod(files.ImportToken, 0o600);
      process.stderr.write(
        `wrote ${files.PublicKeyDer}, ${files.PublicKeyPem} and ${files.ImportToken} (0600); next, locally:\n` +
          `  kms wrap-material --public-key ${files.PublicKeyDer} --algorithm ${o.algorithm} --in KeyMaterial.bin --out ${path.join(out, ENCRYPTED_MATERIAL_FILE)}\n`,
      );
      return { KeyId: result.KeyId, WrappingAlgorithm: o.algorithm, TokenExpireTime: result.TokenExpireTime, Files: files };
    }),
  );

  program
    .command('wrap-material')
    .description('BYOK step 3, locally: encrypt key material with the wrapping public key (PEM or DER); writes base64 to --out (and says so) or prints it')
    .requiredOption('--public-key <file>', 'PublicKey.bin (DER) or PublicKey.pem')
    .addOption(algorithmOption())
    .requiredOption('--in <file>', 'the raw key material, e.g. KeyMaterial.bin (32 bytes for Aliyun_AES_256)')
    .option('--out <file>', `write the base64 here (as \`openssl enc -e -base64 -A\` does), e.g. byok/<key id>/${ENCRYPTED_MATERIAL_FILE}, instead of printing it`)
    .action(async (o: { publicKey: string; algorithm: WrappingAlgorithm; in: string; out?: string }) => {
      const material = await readFile(o.in);
      try {
        if (![16, 24, 32].includes(material.length)) {
          throw new Error(`${o.in} holds ${material.length} bytes; key material is 32 bytes (Aliyun_AES_256), 24 or 16.`);
        }
        const wrapped = wrapKeyMaterial(await readFile(o.publicKey), o.algorithm, material).toString('base64');
        if (o.out) {
          await mkdir(path.dirname(o.out), { recursive: true });
          await writeFile(o.out, wrapped);
          print({ WrappingAlgorithm: o.algorithm, Files: { EncryptedKeyMaterial: o.out } });
        } else process.stdout.write(`${wrapped}\n`);
      } finally {
        material.fill(0);
      }
    });

  clientCommand(
    program
      .command('import-material <keyId>')
      .description('BYOK step 4: import the encrypted key material with its import token (by default both from byok/<key id>/)')
      .option('--material-file <file>', `the base64 of step 3 (default: byok/<key id>/${ENCRYPTED_MATERIAL_FILE})`)
      .option('--token-file <file>', 'token.txt from the same download as the public key (default: byok/<key id>/token.txt)')
      .option('--expire-unix <seconds>', 'when KMS deletes the material (Unix seconds); 0 or absent: never', (v) => {
        if (!/^\d+$/.test(v)) throw new Error('--expire-unix must be Unix seconds');
        return Number(v);
      })
      .option('--new-material', 'new material for a rotation (ImportType=NEW_KEY_MATERIAL): a new version in PendingRotation; rotate it in with `kms key rotate`'),
  ).action((keyId: string, o: ConnectionFlags & { materialFile?: string; tokenFile?: string; expireUnix?: number; newMaterial?: boolean }) =>
    runClientVerb(o, async (client) => {
      // The default folder is named by the key id, whatever the argument (an alias, an ARN).
      const folder = o.materialFile === undefined || o.tokenFile === undefined ? byokFolder(String((await keyState(client, keyId)).KeyId)) : '';
      const materialFile = o.materialFile ?? path.join(folder, ENCRYPTED_MATERIAL_FILE);
      const tokenFile = o.tokenFile ?? path.join(folder, 'token.txt');
      const [encrypted, token] = await Promise.all([readInput(materialFile, 'encrypted key material (step 3)'), readInput(tokenFile, 'import token (step 2)')]);
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
