import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { KmsConfig } from '../config.js';
import type { Hsm } from '../hsm/hsm.js';
import type { SoftwareCipher } from '../hsm/software.js';
import type { AccessRole } from '../store/access-keys.js';
import type { Db } from '../store/db.js';
import type { JobsPort } from './jobs-port.js';

/** What every use case is built on; wired once by the composition root (src/kms.ts). */
export interface ServiceDeps {
  db: Db;
  hsm: Hsm;
  software: SoftwareCipher;
  clock: Clock;
  config: KmsConfig;
  logger: Logger;
  /** Scheduling of delayed work (expiry, rotation, deletion, pool refill). */
  jobs: JobsPort;
}

/** Who is calling: the verified access key (or the system itself, for jobs and the CLI). */
export interface Caller {
  accessKeyId: string;
  role: AccessRole;
  /** Instances a key-user may use; null means every instance. */
  instanceIds: string[] | null;
  requestId?: string | undefined;
}

export const systemCaller: Caller = { accessKeyId: 'system', role: 'admin', instanceIds: null };
