import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * `<data dir>/credentials.json` (0600): the bootstrap admin key and the endpoint a client on
 * this host uses, written by the server at start and read by the CLI's client verbs. This
 * module imports nothing else, so a client verb reads the file without loading the service.
 */
export interface CredentialsFile {
  AccessKeyId: string;
  AccessKeySecret: string;
  Endpoint: string;
}

export const credentialsFilePath = (dataDir: string): string => path.join(dataDir, 'credentials.json');

/** The file's credentials, or undefined when it is missing, unreadable or not credentials. */
export async function readCredentials(file: string): Promise<CredentialsFile | undefined> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<CredentialsFile>;
    if (typeof parsed.AccessKeyId === 'string' && typeof parsed.AccessKeySecret === 'string') {
      return { AccessKeyId: parsed.AccessKeyId, AccessKeySecret: parsed.AccessKeySecret, Endpoint: parsed.Endpoint ?? '' };
    }
  } catch {
    // Missing or unreadable: the caller creates a new one.
  }
  return undefined;
}

/** Writes the file whole (temp file, 0600, rename), creating the data dir (0700) if needed. */
export async function writeCredentials(file: string, credentials: CredentialsFile): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}
