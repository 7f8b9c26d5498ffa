/**
 * Input and output of the CLI's data verbs (`kms encrypt | decrypt | data-key | re-encrypt`),
 * so a shell user can do envelope encryption without writing code: payloads come from a file
 * or stdin and go to stdout as raw bytes or base64 text; ciphertexts come as the JSON a verb
 * printed (`kms data-key K > dk.json`) or as the blob itself.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { type ConnectionFlags, clientSettings } from './client.js';
import { isCanonicalBase64 } from '../domain/asymmetric.js';
import { RpcError, createRpcClient } from './rpc-client.js';

/** Reads all of stdin; refuses a terminal, where nothing would ever arrive. */
async function readStdin(what: string): Promise<Buffer> {
  if (process.stdin.isTTY) throw new Error(`no ${what}: give a file or pipe it to stdin`);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks);
}

/** The bytes of `file`, or of stdin when it is absent or `-`. */
export async function readPayload(file: string | undefined, what = 'input'): Promise<Buffer> {
  return file === undefined || file === '-' ? readStdin(what) : readFile(file);
}

/**
 * A CiphertextBlob given as `-`/nothing (stdin), a file, or the blob text itself; the text
 * may be a verb's JSON output holding `CiphertextBlob` (Encrypt, GenerateDataKey, ReEncrypt).
 */
export async function readCiphertextBlob(source: string | undefined): Promise<string> {
  const text =
    source === undefined || source === '-'
      ? (await readStdin('ciphertext')).toString('utf8')
      : existsSync(source)
        ? await readFile(source, 'utf8')
        : source;
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new Error('the ciphertext input looks like JSON but does not parse');
    }
    const blob = (parsed as Record<string, unknown>)['CiphertextBlob'];
    if (typeof blob !== 'string') throw new Error('the JSON input has no CiphertextBlob');
    return blob;
  }
  if (trimmed === '') throw new Error('the ciphertext input is empty');
  return trimmed;
}

/**
 * `Plaintext` as the service holds it: the base64 text of the bytes (§3.4 documents Plaintext
 * as base64), or with `asBase64` the input itself, already base64 text (a data key's
 * Plaintext, say), sent verbatim.
 * @throws Error when `asBase64` input is not base64.
 */
export function plaintextParameter(input: Buffer, asBase64: boolean): string {
  if (!asBase64) return input.toString('base64');
  const text = input.toString('utf8').trim();
  if (!isCanonicalBase64(text) || text === '') throw new Error('--base64: the input is not base64 text');
  return text;
}

/**
 * What `kms decrypt` writes for a Plaintext: the decoded bytes, or with `asBase64` the text as
 * it came (plus a newline). A Plaintext that is not base64 (an SDK client encrypted free
 * text) cannot be decoded; `--base64` prints it as is.
 */
export function plaintextOutput(plaintext: string, asBase64: boolean): Buffer {
  if (asBase64) return Buffer.from(`${plaintext}\n`, 'utf8');
  if (!isCanonicalBase64(plaintext)) throw new Error('the Plaintext is not base64 text; use --base64 to print it as it is');
  return Buffer.from(plaintext, 'base64');
}

/**
 * Runs a verb whose output is bytes for stdout (not JSON). An API refusal is reported as
 * runClientVerb reports it: `Code: Message (RequestId)` on stderr, exit 1.
 */
export async function runPayloadVerb(
  flags: ConnectionFlags,
  verb: (call: (action: string, params: Record<string, string | number | boolean | undefined>) => Promise<Record<string, unknown>>) => Promise<Buffer>,
): Promise<void> {
  const rpc = createRpcClient(await clientSettings(flags));
  try {
    const bytes = await verb((action, params) => rpc.call(action, params));
    await new Promise<void>((resolve, reject) => process.stdout.write(bytes, (error) => (error ? reject(error) : resolve())));
  } catch (error) {
    if (!(error instanceof RpcError)) throw error;
    process.stderr.write(`${error.code}: ${error.message}${error.requestId ? ` (${error.requestId})` : ''}\n`);
    process.exitCode = 1;
  }
}
