import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { KmsConfig } from '../config.js';
import type { Hsm } from '../hsm/hsm.js';
import type { SoftwareCipher } from '../hsm/software.js';
import type { AccessRole } from '../store/access-keys.js';
import type { Db } from '../store/db.js';
import type { JobsPort } from './jobs-port.js';
import type { PendingNonce } from './nonces.js';
import type { RateWindows } from './rate-windows.js';
import type { EncryptionCounter } from './version-usage.js';
import type { Repositories } from './repositories.js';

/** What every use case is built on; wired once by the composition root (src/kms.ts). */
export interface ServiceDeps {
  db: Db;
  /** Reads outside transactions (the hot path), cached: see services/repositories.ts. */
  repositories: Repositories;
  hsm: Hsm;
  software: SoftwareCipher;
  clock: Clock;
  config: KmsConfig;
  logger: Logger;
  /** Scheduling of delayed work (expiry, rotation, deletion, pool refill). */
  jobs: JobsPort;
  /** Per-second rate windows shared by every process (instance QPS specs, account limits). */
  rates: RateWindows;
  /** Usage per key version: AES-GCM encryptions counted in memory, flushed in batches. */
  encryptions: EncryptionCounter;
}

/** Who is calling: the verified access key (or the system itself, for jobs and the CLI). */
export interface Caller {
  accessKeyId: string;
  role: AccessRole;
  /** Instances a key-user may use; null means every instance. */
  instanceIds: string[] | null;
  requestId?: string | undefined;
  /** The client's address as the edge saw it (audit). */
  sourceIp?: string | undefined;
  /**
   * A crypto request's SignatureNonce while it is not yet claimed: the first crypto admission
   * claims it in the same Redis round trip (services/throttling.ts); the edge claims it
   * otherwise. Absent for the system and the CLI.
   */
  nonce?: PendingNonce | undefined;
  /**
   * The key this request resolved last (set by services/key-lookup.ts once the caller may see
   * it): what the audit of a *refused* call names (a disabled key, a throttled call), which has
   * no answer to take the id from. Set only on a request's own Caller, never on systemCaller.
   */
  resolvedKeyId?: string | undefined;
}

export const systemCaller: Caller = { accessKeyId: 'system', role: 'admin', instanceIds: null };
