/** A KMS instance: the unit of quota and tier (alibaba-api.md §3.6). */

export type InstanceType = 'SOFTWARE' | 'HSM';

/** How a hardware instance holds version material by default; SOFTWARE instances: `Database`. */
export type InstanceKeyStorage = 'HsmInternal' | 'HsmEncryptedDatabase' | 'Database';

export interface Instance {
  /** `kst-…` */
  id: string;
  name: string;
  type: InstanceType;
  /** Key versions the instance may hold (seed 002: every version consumes one unit). */
  keyQuota: number;
  qps: number;
  keyStorage: InstanceKeyStorage;
  status: string;
  createdAt: Date;
}
